"""Bounded concurrency: download many pages, at most three at a time.

The program starts its own tiny HTTP/1.0 server on 127.0.0.1 (an ephemeral port),
then fetches every page with a small hand-written client over
`asyncio.open_connection`. An `asyncio.Semaphore(3)` lets at most three downloads
be in flight at once; the program records how many actually were.
"""

import asyncio

MAX_CONCURRENT = 3
PAGE_COUNT = 8
SERVER_LATENCY = 0.02  # seconds the server "thinks" before answering, so downloads overlap

PAGES = {f"/page/{n}": f"This is page {n}.\n".encode() * (10 * n) for n in range(1, PAGE_COUNT + 1)}
PATHS = [*PAGES, "/missing"]


# --- the server -------------------------------------------------------------------------------


async def handle_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer one HTTP/1.0 request, then close the connection."""
    request_line = await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass  # skip the request headers
    method, path, _version = request_line.decode("latin-1").split()
    await asyncio.sleep(SERVER_LATENCY)
    body = PAGES.get(path)
    if method != "GET" or body is None:
        status, body = "404 Not Found", b"not found\n"
    else:
        status = "200 OK"
    head = f"HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


# --- the client -------------------------------------------------------------------------------


async def fetch(host: str, port: int, path: str) -> tuple[int, bytes]:
    """GET one page; return (status code, body)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode("latin-1"))
    await writer.drain()
    response = await reader.read()  # HTTP/1.0: the server closes when it is done
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


class Downloader:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.semaphore = asyncio.Semaphore(MAX_CONCURRENT)
        self.active = 0
        self.max_active = 0

    async def download(self, path: str) -> tuple[int, bytes]:
        async with self.semaphore:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                return await fetch(self.host, self.port, path)
            finally:
                self.active -= 1


async def main() -> None:
    server = await asyncio.start_server(handle_request, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    async with server:
        downloader = Downloader(host, port)
        results = await asyncio.gather(*(downloader.download(path) for path in PATHS))
    # gather keeps the order of PATHS, whatever order the downloads finished in.
    for path, (status, body) in zip(PATHS, results, strict=True):
        print(f"GET {path}: {status}, {len(body)} bytes")
    print(f"downloaded {sum(status == 200 for status, _ in results)} pages")
    print(f"max concurrent downloads: {downloader.max_active}")


if __name__ == "__main__":
    asyncio.run(main())
