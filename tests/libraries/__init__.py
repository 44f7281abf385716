"""Real asyncio libraries (aiohttp, httpx, websockets, asyncpg, redis-py) on each loop."""
