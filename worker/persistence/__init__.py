"""PostgreSQL adapters: migrations, the unit of work and its repositories, the outbox store."""
