from llmkernel_redis.testing import redis_server, redis_unix_server

__all__ = ["redis_server", "redis_unix_server"]
