"""What a hostile or broken sender costs ``listwatch receiver``: peak RSS and /healthz latency.

``python -m benchmarks.receiver_limits`` runs ``python -m listwatch receiver --sqlite``
(this checkout's, as ``PYTHONPATH`` says) as a child and sends it, over real HTTP:

* a batch of 400 x 1 MiB records, and one of 40 x 16 MiB, whose epoch the fence refuses
  (epoch 5 recorded, 4 sent): the receiver's peak RSS (``VmHWM``) after each;
* on a fresh receiver, 65 KB of gzip that inflate to 64 MiB of blank lines, then a real
  snapshot of 8,192 objects of 8 KiB (64 MiB inflated, 107 KB sent): the answer, how long
  it took, and the latency of ``/healthz`` requests sent every 10 ms meanwhile.

It prints the figures; nothing is written. Numbers depend on the machine and its load.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from listwatch import GroupVersionResource
from listwatch.httpsync import _wire as protocol

PODS = GroupVersionResource("", "v1", "pods")
TOKEN = "benchmark-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": protocol.CONTENT_TYPE}
MiB = 1024 * 1024


def peak_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) // 1024  # type: ignore[union-attr]


async def start_receiver(directory: Path) -> tuple[asyncio.subprocess.Process, str]:
    token = directory / "token"
    token.write_text(TOKEN)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "listwatch", "receiver", "--listen", "127.0.0.1:0",
        "--sqlite", str(directory / "received.db"), "--token-file", str(token),
        env=dict(os.environ), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stderr is not None
    while found := await child.stderr.readline():
        if match := re.search(rb"serving (http://\S+)", found):
            url = match.group(1).decode()
            break
    else:
        raise RuntimeError("the receiver did not start")

    async def drain(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    asyncio.get_running_loop().create_task(drain(child.stderr))
    return child, url


def header(kind: protocol.Kind, epoch: int, generation: int = 1) -> bytes:
    sequence = 0 if kind == "snapshot" else 1
    return protocol.encode_header(
        protocol.Header(kind, PODS, epoch, "s", generation, sequence, "5")
    )


def stale_batch(count: int, size: int) -> bytes:
    blob = b'{"kind":"ConfigMap","data":{"x":"' + b"x" * (size - 40) + b'"}}'
    events = (
        b'{"type":"MODIFIED","key":"default/c%d","resourceVersion":"9","object":%s}\n' % (i, blob)
        for i in range(count)
    )
    return header("batch", 4) + b"".join(events) + protocol.encode_commit(count, "9")


async def during(http: aiohttp.ClientSession, url: str, body: bytes) -> str:
    """POST ``body`` (gzip) to the snapshot endpoint while /healthz is asked every 10 ms."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            async with http.get(f"{url}/healthz", headers=AUTH) as response:
                await response.read()
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.01)  # the probe's pace, not a synchronisation

    prober = asyncio.create_task(probe())
    started = time.monotonic()
    headers = {**AUTH, "Content-Encoding": "gzip"}
    async with http.post(f"{url}/sync/pods/snapshot", data=body, headers=headers) as response:
        answer = (await response.json()).get("message", "applied")
        status = response.status
    took = time.monotonic() - started
    done.set()
    await prober
    latencies.sort()
    return (
        f"{status} in {took:.2f} s ({answer}); /healthz: {len(latencies)} answers, "
        f"median {latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
        child, url = await start_receiver(Path(first))
        async with aiohttp.ClientSession() as http:
            recorded = header("snapshot", 5) + protocol.encode_commit(0, "5")
            async with http.post(f"{url}/sync/pods/snapshot", data=recorded, headers=AUTH) as r:
                assert r.status == 200
            print(f"receiver at rest: {peak_mib(child.pid)} MiB")
            for count, size in ((400, MiB), (40, 16 * MiB)):
                body = stale_batch(count, size)
                async with http.post(f"{url}/sync/pods/batch", data=body, headers=AUTH) as r:
                    status = r.status
                del body
                print(f"stale batch {count} x {size // MiB} MiB: {status}, "
                      f"peak {peak_mib(child.pid)} MiB")  # fmt: skip
        child.kill()
        await child.wait()

        child, url = await start_receiver(Path(second))
        async with aiohttp.ClientSession() as http:
            bomb = header("snapshot", 1) + b"\n" * (64 * MiB) + protocol.encode_commit(0, "5")
            sent = gzip.compress(bomb, 9)
            print(f"gzip bomb ({len(sent):,} bytes): {await during(http, url, sent)}")
            print(f"  peak {peak_mib(child.pid)} MiB")
            records = (
                b'{"key":"default/c%d","resourceVersion":"9","object":{"kind":"ConfigMap",'
                b'"data":{"x":"%s"}}}\n' % (i, b"y" * 8000)
                for i in range(8192)
            )
            real = header("snapshot", 1, 2) + b"".join(records) + protocol.encode_commit(8192, "9")
            sent = gzip.compress(real, 6)
            print(f"64 MiB snapshot ({len(sent):,} bytes): {await during(http, url, sent)}")
            print(f"  peak {peak_mib(child.pid)} MiB")
        child.kill()
        await child.wait()


if __name__ == "__main__":
    asyncio.run(main())
