from llmkernel_redis.testing import redis_server

__all__ = ["redis_server"]
