"""Opening a storage config's store as Bayport allows it: the operator's endpoint policy
(endpoints.py, the SSRF checks), the workspaces' local folders (local_roots.py), the shared
request rates and caps held in Redis (throttle.py), deadlines on checks (deadline.py), and the
config -> guarded, throttled store resolver the import logic is handed (resolver.py)."""
