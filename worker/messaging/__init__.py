"""RabbitMQ adapters: topology, the command consumer, the outbox relay, the RPC client."""
