"""RabbitMQ adapters: the layer beneath aio-pika, topology, the command consumer, the outbox relay."""
