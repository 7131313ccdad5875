from fechatter_core.serve import run_service
from fechatter_core.settings import FechatterSettings

run_service(
    "fechatter_server", "fechatter", FechatterSettings, "fechatter_server.app:create_app", "FECHATTER_PORT"
)
