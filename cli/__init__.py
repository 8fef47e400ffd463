"""The `bayport` command: run the service (standalone, api, worker), submit and watch imports."""
