from fechatter_core.serve import run_service
from fechatter_core.settings import GatewaySettings

run_service("gateway", "gateway", GatewaySettings, "gateway.app:create_app", "GATEWAY_PORT")
