from fechatter_core.serve import run_service
from fechatter_core.settings import BotSettings

run_service("bot_server", "bot", BotSettings, "bot_server.app:create_app", "BOT_PORT")
