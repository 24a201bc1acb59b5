from gateway.app import create_app
from gateway.settings import Settings
from shop import ops

if __name__ == "__main__":
    ops.main(
        "gateway",
        Settings,
        create_app,
        "The public HTTP API for the mobile apps (/v1, OpenAPI at /schema). Sends commands and queries to the "
        "other services over NATS. Set GATEWAY_JWT_SECRET outside development.",
    )
