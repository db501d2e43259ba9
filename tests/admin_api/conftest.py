from tests.admin_fixtures import *  # noqa: F401,F403
