"""The original's ``toto.httpworkerconnection`` belongs to its ZeroMQ worker subsystem, which is outside the seed."""

raise ImportError(
    "toto.httpworkerconnection is the original Toto's ZeroMQ worker subsystem, which this Toto does not include; "
    "run background work with toto.tasks.TaskQueue, or with a job queue such as Celery or RQ"
)
