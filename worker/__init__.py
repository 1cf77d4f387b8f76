"""outplan-worker: owns outplans, answers commands over RabbitMQ, publishes their events."""
