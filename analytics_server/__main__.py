from fechatter_core.serve import run_service
from fechatter_core.settings import AnalyticsSettings

run_service(
    "analytics_server", "analytics", AnalyticsSettings, "analytics_server.app:create_app", "ANALYTICS_PORT"
)
