from shop import ops

from projector_order_list.bootstrap import create_app
from projector_order_list.settings import Settings

if __name__ == "__main__":
    ops.main(
        "projector-order-list", Settings, create_app,
        "Projects order events from JetStream (durable consumer 'order-list') into the OpenSearch alias 'orders'.",
    )
