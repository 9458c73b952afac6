"""Run every benchmark and regenerate docs/benchmarks.md.

    .venv/bin/python -m bench.run                 # full run (minutes)
    .venv/bin/python -m bench.run --smoke         # tiny counts, seconds (CI)
    .venv/bin/python -m bench.run --model PATH    # another model (default: the embedded one if present)
    .venv/bin/python -m bench.run --only latency  # one bench (repeatable)

Servers run with AI_ARTIST_MODEL__CPU_THREADS=1 and the bare pipeline with torch.set_num_threads(1).
"""
from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import time
import traceback
from pathlib import Path

from . import capacity, latency, overhead, queue_gap, slow_client, startup
from .common import PROJECT_ROOT, WORK_ROOT, Context, Row, Server, default_model, machine, model_label, raise_open_files

BENCHES = ["startup", "overhead", "latency", "queue_gap", "slow_client", "capacity"]
FINDINGS = """## What the profiles found (py-spy, 2026-11-27, on this machine)

These notes explain the figures above; the figures themselves come only from the run.

- **The machine is the first cause of the misses.** Two cores are shared with other work (model
  training, test suites). The "event-loop thread on a CPU / waiting for one" rows come from the kernel's
  schedstat for the server's loop thread during each measured job: a large "waiting" share means the
  thread was runnable and no core was free. A `py-spy --gil` profile of a 100-subscriber job showed the
  server's threads holding the GIL in only ~20 % of the samples; one step's fan-out stalled ~450 ms
  before the loop even ran the publish. Latency and overhead figures swing by 2x between rounds (see
  the pair ratios); the fastest-run ratio is the better estimate of the server's own cost.
- **Overhead with 100 subscribers is GIL contention plus CPU.** The generation thread and the event
  loop share one interpreter. The small default model keeps the pipeline thread Python-bound (small
  tensors, many ops), so while the loop fans a step out to 100 sockets the pipeline waits for the GIL:
  the "generation thread blocked" rows (schedstat: pipeline wall − CPU − CPU wait) grow from ~0 to
  ~100+ ms per 30-step job, and the loop's extra CPU (~50 µs per message per subscriber in a
  separate experiment) competes for the two cores. Meeting ≤ 1.05 here needs the fan-out off the
  generation process's GIL: recommended, run the pipeline in a child process (app/jobs.py + app/generator.py:
  a `multiprocessing` worker with the step callback sent over a pipe), or cut the per-message cost by a
  faster WebSocket stack than NiceGUI's pinned wsproto.
- **Fan-out cost per message is in uvicorn + wsproto, not in the bus.** With 1,000 subscribers ~45 % of
  the loop thread's samples were in the per-connection sender (`Connection._send_forever`); of those,
  the socket `write` syscall (~22 %) and wsproto framing (~12 %) dominate, Starlette's middleware send
  wrappers ~4 %, our Outbox/Connection/EventBus ~10-15 % together. NiceGUI pins uvicorn to
  `ws="wsproto"` (pure Python). Each subscriber costs one frame and one syscall per message, so the
  1,000-subscriber fan-out takes tens of ms of CPU per step even on an idle core.
- **permessage-deflate costs ~3x the memory and ~2x the latency.** Browsers and the `websockets`
  library offer it and uvicorn accepts it by default; wsproto then keeps a zlib compressor (and
  decompressor) per connection (the capacity rows with and without it) and compresses every message
  once per connection. Recommended: `ws_per_message_deflate=False` in `ui.run(...)` (app/server.py).
- **A too-slow client never got its close frame** (fixed in app/websocket.py): after the outbox overflowed,
  `websocket.close()` waits behind the unread bytes, and the receive loop's next `receive_text()` raised
  Starlette's `WebSocketDisconnected`; the ASGI call ended with an error and uvicorn closed the socket
  without the 1013 frame. The endpoint now ends quietly and waits (up to 30 s) for the close frame.
  A client that never reads again still holds its socket until TCP gives up (ASGI can't abort it).
- **Queue gap**: of the gap, the part on the loop (complete → next `generation_started`) is the
  worker's bookkeeping (log line, one `generation_queued` per waiting job, two `get_job` reads,
  `mark_running`); the rest is the hand-off to the generation thread, which needs the GIL while the loop
  sends the complete/started/queued messages. The bus now stores seqs once per loop iteration (one
  transaction once the store offers `save_seqs`). Recommended in app/jobs.py: hand the job to the thread
  first and announce positions / publish `generation_started` after `run_in_executor` is scheduled.
- **Start-up**: `import app.server` imports `diffusers` (app/schedulers.py, at module level) and `torch`
  (app/previews.py), ~75 % of the import time under `python -X importtime`, before uvicorn binds its
  port. Recommended: import them inside the functions that need them, so the page is served while the
  model thread imports them.
- **Tried later the same day (overhead bench alone, `python -m bench.run --only overhead`)**:
  `sys.setswitchinterval(0.0002)` in the server left the 100-subscriber ratio where it was (1.243 against
  1.229 with the default 5 ms interval, in two back-to-back runs whose pair ratios each spread from 0.86 to
  1.6), so a shorter GIL hand-off does not remove the cost. In both runs the bare pipeline still ran with
  PyTorch's default CPU settings while the server used the faster ones of app/cpu_speed.py, so both
  ratios understate the overhead; the bare pipeline now uses the server's settings. A faster WebSocket
  stack helps less than hoped: uvicorn's `websockets-sansio` protocol against NiceGUI's pinned `wsproto`,
  measured in isolation (a Starlette app sending a 200-byte progress message 30 times to 100 local
  clients), cost 40 against 54 µs of server CPU per message. The structural fix stays the pipeline in its
  own process.
- **Polling is expensive**: one `GET /api/jobs/{id}` costs a few ms of the loop (NiceGUI + FastAPI
  middleware stack); a client polling every 10 ms doubled a 4-step job's wall time. The 0-subscriber
  overhead row therefore takes the job's end from the server's own stamp instead of polling.
"""


def _cell(value: object) -> str:
    return "" if value is None else str(value).replace("|", "\\|")


def render(rows: list[Row], ctx: Context, info: dict[str, str], seconds: float, args: argparse.Namespace) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m bench.run" + (" --smoke" if ctx.smoke else "")
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on {now} in {seconds:.0f} s{' (smoke sizes: not meaningful figures)' if ctx.smoke else ''}.",
        "Regenerate with `.venv/bin/python -m bench.run`; every figure below is measured in that run.",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, {info['os']} (shared with other work: figures are noisy)",
        f"- Versions: {info['versions']}",
        f"- Model: {model_label(ctx.model)}",
        f"- Threads: server `AI_ARTIST_MODEL__CPU_THREADS=1`, bare pipeline `torch.set_num_threads(1)`; "
        f"clock `{info['clock']}` shared by server and clients",
        "",
        "| Benchmark | Measurement | Value | Unit | Target | Met | Notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        met = "" if row.met is None else ("✅ met" if row.met else "❌ missed")
        lines.append(
            f"| {_cell(row.bench)} | {_cell(row.metric)} | {_cell(row.value)} | {_cell(row.unit)} | "
            f"{_cell(row.target)} | {met} | {_cell(row.note)} |"
        )
    if ctx.notes:
        lines += ["", "## How each was measured", ""]
        for bench, notes in ctx.notes.items():
            lines.append(f"- **{bench}**: " + " ".join(notes))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny counts, seconds not minutes")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: embedded, else tiny SD)")
    parser.add_argument("--only", action="append", choices=BENCHES, help="run only this bench (repeatable)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    args = parser.parse_args(argv)

    began = time.perf_counter()
    limits = raise_open_files(4096)
    work = args.work or WORK_ROOT / f"run-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(model=(args.model or default_model()).resolve(), smoke=args.smoke, work=work)
    ctx.note("limits", f"open files raised to soft {limits[0]} / hard {limits[1]} for the bench and its servers.")
    chosen = args.only or BENCHES
    rows: list[Row] = []
    failed = False
    server: Server | None = None
    try:
        for name in chosen:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                if name == "startup":
                    rows += startup.run(ctx)
                elif name == "capacity" and not ctx.smoke:
                    rows += capacity.run(ctx)  # fresh servers: RSS growth must not hide in freed memory
                else:
                    if server is None:
                        server = Server(ctx.model, work / "server", hooked=True).start()
                        server.wait_until(lambda h: h["model"]["state"] == "ready")
                    module = {"overhead": overhead, "latency": latency, "queue_gap": queue_gap,
                              "slow_client": slow_client, "capacity": capacity}[name]
                    rows += module.run(ctx, server)
            except Exception as error:  # keep the others; the table shows what failed
                failed = True
                traceback.print_exc()
                rows.append(Row(name, "FAILED", f"{type(error).__name__}: {error}"[:200]))
            print(f"[bench] {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.stop()
    text = render(rows, ctx, machine(), time.perf_counter() - began, args)
    if FINDINGS and not ctx.smoke:
        text += "\n" + FINDINGS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    if args.work is None and not failed:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
