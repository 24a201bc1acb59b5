from command_service.bootstrap import create_app
from command_service.settings import Settings
from shop import ops

if __name__ == "__main__":
    ops.main(
        "command-service",
        Settings,
        create_app,
        "Serves commands on NATS cmd.>, runs the aggregates, appends events to PostgreSQL and publishes them "
        "to the JetStream stream EVENTS through a transactional outbox.",
    )
