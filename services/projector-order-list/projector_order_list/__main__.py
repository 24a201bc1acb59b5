from projector_order_list.bootstrap import create_app
from projector_order_list.settings import Settings
from shop import ops

if __name__ == "__main__":
    ops.main(
        "projector-order-list",
        Settings,
        create_app,
        "Projects order events from JetStream (durable consumer 'order-list') into the OpenSearch alias 'orders'.",
    )
