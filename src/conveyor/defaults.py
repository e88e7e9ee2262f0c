"""Every default Conveyor uses, in one place."""

from __future__ import annotations

#: Environment variable naming the server URL; unset means the embedded server.
URL_ENV = "CONVEYOR_URL"
#: Environment variable naming the embedded server's data folder.
DATA_DIR_ENV = "CONVEYOR_DATA_DIR"
#: Environment variable choosing how Conveyor meets redis-py (see conveyor.compat): "auto"
#: uses the internals this redis-py has, "public" only its public API.
REDIS_COMPAT_ENV = "CONVEYOR_REDIS_COMPAT"
REDIS_COMPAT_MODES = ("auto", "public")
#: Environment variables of the HTTP commands: CONVEYOR_<COMMAND>_<OPTION>.
METRICS_TOKEN_ENV = "CONVEYOR_METRICS_TOKEN"
DASHBOARD_TOKEN_ENV = "CONVEYOR_DASHBOARD_TOKEN"
DASHBOARD_BASIC_AUTH_ENV = "CONVEYOR_DASHBOARD_BASIC_AUTH"
#: The exporter's token variable before the scheme above; still read, with a warning.
METRICS_TOKEN_ENV_OLD = "CONVEYOR_TOKEN"
#: Prefix of every key Conveyor writes.
KEY_PREFIX = "conveyor"

# Jobs
MAX_ATTEMPTS = 3
JOB_TIMEOUT = 300.0  # seconds a handler may run before the attempt counts as timed out
PRIORITY = 0
PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
ATTEMPTS_MAX = 1_000_000  # most attempts a job may have (also bounds stalls and replays)
MAX_PAYLOAD_BYTES = 512 * 1024
MAX_RESULT_BYTES = 512 * 1024
MAX_ERROR_MESSAGE_CHARS = 2_000
MAX_TRACEBACK_CHARS = 8_000
MAX_ID_CHARS = 200  # a job id (or a schedule id)
MAX_NAME_CHARS = 200  # a job (handler) name
MAX_KEY_CHARS = 1_000  # a group key, a dedup key, a partition key
MAX_SECONDS = 10 * 365 * 24 * 3600.0  # longest delay, timeout, retention or window (10 years)
MAX_TIMESTAMP = 32_503_680_000.0  # latest run_at (Unix time of 3000-01-01)
MIN_TIMEOUT = 0.001  # shortest timeout or window (one millisecond, the stored unit)
MAX_LIMIT = 1_000_000  # largest limit count (concurrency, jobs per rate window)
MAX_REPLICAS = 100  # most replicas a durable enqueue may wait for
MAX_SCHEDULE_ID_CHARS = MAX_ID_CHARS - 40  # its job ids add "schedule:" and the tick
MIN_EVERY = 1.0  # shortest interval of an ``every=`` schedule (seconds)
MAX_CLOCK_SKEW = 3600.0  # an imported past time (created, died) may be this far in our future

# Retention (completed and dead jobs are trimmed by count and by age)
COMPLETED_KEEP_COUNT = 1_000
COMPLETED_KEEP_AGE = 24 * 3600.0
DEAD_KEEP_COUNT = 10_000
DEAD_KEEP_AGE = 14 * 24 * 3600.0
EVENTS_MAXLEN = 10_000
METRICS_WINDOW = 6 * 3600.0  # per-minute metrics are kept this long
MAX_PROGRESS_BYTES = 4 * 1024
MAX_LOG_LINE_CHARS = 2_000
MAX_LOG_BYTES = 64 * 1024  # per job; older lines are dropped first

# Workers
CONCURRENCY = 10
FETCH_BATCH = 100  # most jobs taken by one fetch call
LOCK_TTL = 10.0  # a lock not renewed for this long marks its job stalled
LOCK_RENEW_INTERVAL = LOCK_TTL / 3
STALL_CHECK_INTERVAL = 2.0  # killed worker's jobs recovered within LOCK_TTL + this (12 s)
SCHEDULE_CHECK_INTERVAL = 1.0  # how often workers look for schedule ticks that are due
MAX_STALLS = 3  # more stalls than this and the job is dead ("too_many_stalls")
# A job whose name no live worker of its queue has known for this long is dead
# ("unknown_job"); until then workers that do not know the name leave it for one that does.
UNKNOWN_JOB_GRACE = 300.0
UNKNOWN_JOB_PAUSE = 0.5  # a fetch that found only names the worker does not know: wait this
# (doubling, up to IDLE_BLOCK, while it keeps finding only those)
FETCH_SCAN_LIMIT = 200  # most waiting jobs one fetch looks at to find names it knows
IDLE_BLOCK = 5.0  # longest a blocked fetch waits before looking again
SHUTDOWN_GRACE = 30.0
#: After the grace, how long a stopping worker waits for cancelled handlers to end before it
#: hands their jobs back anyway (an async handler may swallow its cancellation).
SHUTDOWN_CANCEL_WAIT = 5.0
HEARTBEAT_TTL = 30.0
RECONNECT_BACKOFF_MAX = 5.0
MAX_ABANDONED_THREADS = 10  # threads hung past their timeout before a worker stops itself
# A background task that fails is logged and restarted after 1 s, 2 s, 4 s, ... (at most
# TASK_RESTART_PAUSE_MAX); after TASK_RESTARTS failures in a row the worker stops.
TASK_RESTARTS = 8
TASK_RESTART_PAUSE = 1.0
TASK_RESTART_PAUSE_MAX = 30.0
TASK_HEALTHY_AFTER = 60.0  # a task that ran this long before failing starts its count over

# Connections
CONNECT_TIMEOUT = 2.0
CONNECT_RETRIES = 3
SOCKET_TIMEOUT = 10.0

# Durable enqueue (WAITAOF / WAIT)
DURABLE_TIMEOUT = 1.0

# Backoff (exponential, seconds)
BACKOFF_BASE = 1.0
BACKOFF_FACTOR = 2.0
BACKOFF_CAP = 300.0
MAX_BACKOFF_FACTOR = 1000.0

# HTTP (the Prometheus exporter and the dashboard)
HTTP_READ_TIMEOUT = 10.0  # seconds a connection has to deliver a whole request
HTTP_MAX_CONNECTIONS = 100  # more at once are answered 503
SCRAPE_TIMEOUT = 8.0  # seconds an exporter scrape may read; past it, conveyor_up is 0
API_MAX_BODY_BYTES = 1024 * 1024  # largest dashboard API or form request body
API_MAX_IDS = 10_000  # most job ids one dashboard request may name
