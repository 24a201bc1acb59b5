from projector_analytics.bootstrap import create_app
from projector_analytics.settings import Settings
from shop import ops

if __name__ == "__main__":
    ops.main(
        "projector-analytics",
        Settings,
        create_app,
        "Projects order and product events from JetStream (durable consumer 'analytics') into Redis counters "
        "under the key prefix 'analytics:'.",
    )
