from projector_catalog.bootstrap import create_app
from projector_catalog.settings import Settings
from shop import ops

if __name__ == "__main__":
    ops.main(
        "projector-catalog",
        Settings,
        create_app,
        "Projects product events from JetStream (durable consumer 'catalog') into the OpenSearch alias 'products'.",
    )
