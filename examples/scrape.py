"""Scraping: fetch many pages at once with httpx, at most four in flight (an asyncio.Semaphore).

The program starts a small site of its own on 127.0.0.1 (aiohttp's web server, an
ephemeral port): an index page that links to twelve articles, each answering after a
short delay. The scraper reads the index, follows every link concurrently through one
`httpx.AsyncClient`, and takes each article's title and word count from its HTML.

Needs aiohttp and httpx (`pip install aiohttp httpx`).
"""

import asyncio
import re

import httpx
from aiohttp import web

ARTICLE_COUNT = 12
MAX_CONCURRENT = 4
SERVER_LATENCY = 0.05  # seconds each article takes to answer, so fetches overlap

TITLE = re.compile(r"<title>(.*?)</title>")
LINK = re.compile(r'<a href="([^"]+)">')
BODY = re.compile(r"<p>(.*?)</p>", re.DOTALL)


# --- the site ----------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    numbers = range(1, ARTICLE_COUNT + 1)
    links = "".join(f'<li><a href="/articles/{n}">article {n}</a></li>' for n in numbers)
    return web.Response(text=f"<title>Index</title><ul>{links}</ul>", content_type="text/html")


async def article(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    await asyncio.sleep(SERVER_LATENCY)
    words = " ".join(["word"] * (n * 25))
    html = f"<title>Article {n}: {n * 25} words</title><p>{words}</p>"
    return web.Response(text=html, content_type="text/html")


async def start_site() -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/articles/{n}", article)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


# --- the scraper -------------------------------------------------------------------------------


class Scraper:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.semaphore = asyncio.Semaphore(MAX_CONCURRENT)
        self.active = 0
        self.max_active = 0

    async def fetch(self, path: str) -> str:
        async with self.semaphore:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                response = await self.client.get(path)
                response.raise_for_status()
                return response.text
            finally:
                self.active -= 1

    async def scrape(self, path: str) -> tuple[str, int]:
        """The title and the number of words of one page."""
        html = await self.fetch(path)
        title = TITLE.search(html)
        body = BODY.search(html)
        return (title.group(1) if title else "?"), len(body.group(1).split()) if body else 0


async def main() -> None:
    runner, url = await start_site()
    try:
        # Building an httpx client is blocking work: it reads the CA bundle into an
        # SSL context (~60 ms the first time here), long enough for asyncio's debug
        # mode to report a slow callback, so it is built in a worker thread.
        # trust_env=False: a proxy set in the environment must not come between us and loopback.
        async with await asyncio.to_thread(
            httpx.AsyncClient, base_url=url, trust_env=False, timeout=30
        ) as client:
            scraper = Scraper(client)
            links = LINK.findall(await scraper.fetch("/"))
            print(f"index: {len(links)} links")
            pages = await asyncio.gather(*(scraper.scrape(link) for link in links))
    finally:
        await runner.cleanup()
    for link, (title, words) in zip(links, pages, strict=True):
        print(f"{link}: {title!r} ({words} words)")
    print(f"scraped {len(pages)} pages, {sum(words for _, words in pages)} words in all")
    print(f"max concurrent fetches: {scraper.max_active}")


if __name__ == "__main__":
    asyncio.run(main())
