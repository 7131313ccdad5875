from fechatter_core.serve import run_service
from fechatter_core.settings import NotifySettings

run_service("notify_server", "notify", NotifySettings, "notify_server.app:create_app", "NOTIFY_PORT")
