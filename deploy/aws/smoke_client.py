"""Two scripted meshcall clients for deploy/aws/smoke (needs the `websockets` package).

    python smoke_client.py run --url wss://... --origin https://... --out FILE [--expect aws|standin]
    python smoke_client.py annotate --out FILE --log-messages FILE

`run` drives the WebSocket API through a call's life and writes what it saw to FILE (JSON):
every step, every close code, and the failures. A and B join a room and signal each other;
B's TCP connection is killed without a close frame (an RST, as a phone leaving Wi-Fi does);
B resumes on a new socket (B2) within the grace; B resumes once more (B3) while B2 is still
open, so the service takes B over (on AWS: DeleteConnection on B2) and B2 sees a close
code; A's signal reaches B3; B3 and A leave; then a third socket sends a binary frame.
Exit status 0 when every check passed.

--expect aws (the default) also asserts what real API Gateway does and a local stand-in
does not: a binary frame is refused by closing the connection with 1003. --expect standin
records that close code without asserting it (the self-hosted server answers a binary frame
with an error frame instead).

`annotate` adds to FILE the function's `disconnected` log lines (what API Gateway reported
as each socket's close status in `$disconnect`), fetched by deploy/aws/smoke from CloudWatch.
"""

import argparse
import asyncio
import json
import re
import secrets
import socket
import struct
import sys
import time

STEP_TIMEOUT = 10.0


class Failed(Exception):
    pass


class Smoke:
    def __init__(self, url, origin, expect, connect_wait):
        self.url, self.origin, self.expect, self.connect_wait = url, origin, expect, connect_wait
        self.report = {
            "url": url, "origin": origin, "expect": expect,
            "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "steps": [], "closeCodes": {}, "failures": [],
        }

    # ------------------------------------------------------------------ helpers

    def step(self, what, **details):
        self.report["steps"].append(dict(step=what, at=round(time.time(), 3), **details))
        print(f"smoke: {what}" + (f" {json.dumps(details)}" if details else ""), flush=True)

    def check(self, ok, what):
        if not ok:
            self.report["failures"].append(what)
            print(f"smoke: FAILED: {what}", file=sys.stderr, flush=True)
        return ok

    def must(self, ok, what):
        if not self.check(ok, what):
            raise Failed(what)

    async def connect(self, name, wait=0.0):
        from websockets.asyncio.client import connect
        deadline = time.monotonic() + wait
        while True:
            try:
                ws = await connect(self.url, origin=self.origin, ping_interval=None,
                                   open_timeout=STEP_TIMEOUT, max_size=2 ** 20)
                self.step(f"{name} connected")
                return ws
            except Exception as e:  # a new API may take a moment to resolve and route
                if time.monotonic() >= deadline:
                    raise Failed(f"{name} could not connect to {self.url}: {e!r}")
                await asyncio.sleep(2)

    async def send(self, ws, **frame):
        await ws.send(json.dumps(frame))

    async def receive(self, ws, name, want, timeout=STEP_TIMEOUT, seen=None):
        """The next frame for which want(frame) is true; other frames are kept in `seen`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed(f"{name}: nothing wanted within {timeout} s (saw {seen})")
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except asyncio.TimeoutError:
                continue
            except Exception as e:
                raise Failed(f"{name}: connection ended while waiting ({e!r}, close code {ws.close_code})")
            frame = json.loads(raw) if isinstance(raw, str) else {"binary": len(raw)}
            if want(frame):
                return frame
            if seen is not None:
                seen.append(frame)

    async def drain(self, ws, seconds):
        """Every frame that arrives within `seconds`."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except asyncio.TimeoutError:
                break
            except Exception:
                break
            got.append(json.loads(raw) if isinstance(raw, str) else {"binary": len(raw)})
        return got

    async def closed(self, ws, timeout):
        """Waits for the service to close `ws`; its close code, or None if it stayed open."""
        deadline = time.monotonic() + timeout
        frames = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
                frames.append(json.loads(raw) if isinstance(raw, str) else {"binary": len(raw)})
            except asyncio.TimeoutError:
                return None, frames
            except Exception:
                return ws.close_code, frames
        return None, frames

    @staticmethod
    def kill(ws):
        """Ends the TCP connection at once with an RST and no WebSocket close frame."""
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.transport.abort()

    # ------------------------------------------------------------------ the run

    async def run(self):
        codes = self.report["closeCodes"]
        room = "smoke-" + secrets.token_hex(4)
        self.report["room"] = room
        a = await self.connect("A", wait=self.connect_wait)
        await self.send(a, action="joinRoom", roomId=room)
        ja = await self.receive(a, "A", lambda f: f.get("type") == "joined")
        a_id = ja["connectionId"]
        self.must(ja.get("participants") == [] and ja.get("roomId") == room, f"A joined an empty room: {ja}")
        self.step("A joined", connectionId=a_id)

        b = await self.connect("B")
        await self.send(b, action="joinRoom", roomId=room)
        jb = await self.receive(b, "B", lambda f: f.get("type") == "joined")
        b_id, token = jb["connectionId"], jb.get("resumeToken")
        self.must(jb.get("participants") == [a_id], f"B sees A in the room: {jb}")
        self.must(bool(token), "joined carries a resumeToken (resume is on)")
        await self.receive(a, "A", lambda f: f.get("type") == "newParticipant"
                           and f.get("participantConnectionId") == b_id)
        self.step("B joined; A told", connectionId=b_id)

        offer = {"sdp": "smoke-offer", "n": 1}
        await self.send(a, action="signal", to=b_id, data=offer)
        got = await self.receive(b, "B", lambda f: f.get("type") == "signal")
        self.must(got.get("from") == a_id and got.get("data") == offer, f"A's signal reaches B as sent: {got}")
        await self.send(b, action="signal", to=a_id, data={"sdp": "smoke-answer"})
        got = await self.receive(a, "A", lambda f: f.get("type") == "signal")
        self.must(got.get("from") == b_id, f"B's signal reaches A: {got}")
        self.step("signals relayed both ways")

        # The vanished socket: no close frame, an RST.
        self.kill(b)
        await asyncio.sleep(0.2)
        codes["killedTcpClientSide"] = b.close_code
        self.step("B's TCP connection killed (RST, no close frame)", clientSideCloseCode=b.close_code)
        await asyncio.sleep(2)

        b2 = await self.connect("B2")
        await self.send(b2, action="resume", token=token)
        r2 = await self.receive(b2, "B2", lambda f: f.get("type") in ("joined", "error"))
        self.must(r2.get("type") == "joined" and r2.get("resumed") is True and r2.get("connectionId") == b_id
                  and r2.get("roomId") == room, f"B resumed on a new socket with its id and room: {r2}")
        token = r2.get("resumeToken") or token
        self.step("B resumed on B2")
        seen = await self.drain(a, 2)
        self.must(not [f for f in seen if f.get("type") == "participantLeft"],
                  f"the room was not told B left while it resumed: {seen}")

        # The takeover: B resumes again while B2 is still open; the service closes B2.
        b3 = await self.connect("B3")
        await self.send(b3, action="resume", token=token)
        r3 = await self.receive(b3, "B3", lambda f: f.get("type") in ("joined", "error"))
        self.must(r3.get("type") == "joined" and r3.get("resumed") is True and r3.get("connectionId") == b_id,
                  f"B resumed on B3 over the open B2: {r3}")
        code, frames = await self.closed(b2, STEP_TIMEOUT)
        codes["takeover"] = code
        self.step("B2 closed by the takeover", closeCode=code, framesBefore=frames)
        self.must(code is not None, "the taken-over socket B2 is closed by the service")
        await self.send(a, action="signal", to=b_id, data={"sdp": "after-takeover"})
        got = await self.receive(b3, "B3", lambda f: f.get("type") == "signal")
        self.must(got.get("data") == {"sdp": "after-takeover"}, f"A's signal reaches B on B3: {got}")
        self.step("signal delivered to B3")

        # Leave.
        await self.send(b3, action="leaveRoom")
        await self.receive(a, "A", lambda f: f.get("type") == "participantLeft"
                           and f.get("participantConnectionId") == b_id)
        self.step("B left; A told")
        await self.send(a, action="leaveRoom")
        await asyncio.sleep(0.5)
        leave = {}
        for name, ws in (("A", a), ("B3", b3)):
            await ws.close(1000, "smoke done")
            leave[name] = ws.close_code
        codes["cleanClose"] = leave
        self.step("A and B3 closed cleanly", closeCodes=leave)

        # A binary frame: API Gateway closes with 1003 and never invokes the function.
        c = await self.connect("C")
        await c.send(b"\x00meshcall smoke\xff")
        # A stand-in that answers with an error frame instead keeps the socket open.
        code, frames = await self.closed(c, STEP_TIMEOUT if self.expect == "aws" else 3)
        codes["binaryFrame"] = code
        self.step("binary frame sent", closeCode=code, framesBefore=frames)
        if code is None:
            await c.close(1000)
        if self.expect == "aws":
            self.check(code == 1003, f"API Gateway closes a binary frame's connection with 1003 (got {code})")

    async def main(self):
        try:
            await self.run()
        except Failed as e:
            if str(e) not in self.report["failures"]:
                self.report["failures"].append(str(e))
            print(f"smoke: FAILED: {e}", file=sys.stderr, flush=True)
        self.report["ok"] = not self.report["failures"]
        return self.report


def annotate(out, log_messages):
    with open(out, encoding="utf-8") as f:
        report = json.load(f)
    try:
        with open(log_messages, encoding="utf-8") as f:
            lines = [m for m in json.load(f) or [] if "disconnected" in m]
    except (OSError, ValueError) as e:
        report["disconnectLog"] = {"error": f"could not read the function's log: {e}"}
    else:
        statuses = []
        for line in lines:
            m = re.search(r'"status"\s*:\s*(\d+)', line) or re.search(r"\bstatus=(\d+)", line)
            statuses.append(int(m.group(1)) if m else None)
        report["disconnectLog"] = {"lines": lines, "statuses": statuses}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--url", required=True)
    run.add_argument("--origin", required=True)
    run.add_argument("--out", required=True)
    run.add_argument("--expect", choices=["aws", "standin"], default="aws")
    run.add_argument("--connect-wait", type=float, default=60.0,
                     help="seconds to keep retrying the first connection (a new API)")
    ann = sub.add_parser("annotate")
    ann.add_argument("--out", required=True)
    ann.add_argument("--log-messages", required=True)
    args = parser.parse_args()
    if args.command == "annotate":
        annotate(args.out, args.log_messages)
        return 0
    report = asyncio.run(Smoke(args.url, args.origin, args.expect, args.connect_wait).main())
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(f"smoke: close codes {json.dumps(report['closeCodes'])}; written to {args.out}", flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
