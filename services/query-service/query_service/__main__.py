from query_service.bootstrap import create_app
from query_service.settings import Settings
from shop import ops

if __name__ == "__main__":
    ops.main(
        "query-service",
        Settings,
        create_app,
        "Answers queries on NATS qry.> from the read models (OpenSearch 'orders' and 'products', Redis "
        "'analytics:'), waiting boundedly for the caller's position (read your own writes).",
    )
