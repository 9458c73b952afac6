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

from . import capacity, latency, overhead, queue_gap, slow_client, startup, studio
from .common import PROJECT_ROOT, WORK_ROOT, Context, Row, Server, default_model, machine, model_label, raise_open_files

BENCHES = ["startup", "overhead", "latency", "queue_gap", "slow_client", "capacity", "studio"]
FINDINGS = """## What the profiles found (py-spy, schedstat; 2026-11-27, on this machine)

These notes explain the figures above; the figures themselves come only from the run.

- **The pipeline runs in its own process (since 2026-11-27 evening), and that met the overhead targets.**
  Before, the pipeline ran in a thread of the server: the small default model keeps it Python-bound,
  so while the loop fanned a step out to 100 sockets the pipeline waited for the GIL. Measured then:
  the generation thread blocked 267 ms per 30-step job at 100 subscribers (schedstat: wall − CPU −
  CPU wait), overhead 1.22x (target 1.05), 1.25x with previews (target 1.10);
  `sys.setswitchinterval(0.0002)` changed nothing (1.243 vs 1.229) and uvicorn's `websockets-sansio`
  against NiceGUI's pinned `wsproto` saves only 40 vs 54 µs of server CPU per message. Now the model
  lives in app/pipeline_process.py; the server reads its `StepDone` messages with `loop.add_reader`.
  The "pipeline thread blocked" rows are ≈ 0 ms (within the clocks' resolution) at every subscriber
  count, and the ratios left are CPU contention on two cores shared by the pipeline, the server's
  loop and the bench's own clients.
- **1,000 subscribers: the fan-out's cost per message, then its shape (2026-11-27, night).** With the
  pipeline in its own process the loop and the 1,000-client bench share the second core, and p99 was
  132-163 ms. Three changes, each measured with `loop CPU per progress message delivered`:
  sends go out on the spot instead of waking one sender task per socket (app/eager.py; 71-78 → 46-48 µs);
  uvicorn's `websockets-sansio` instead of NiceGUI's pinned `wsproto` (app/server.py; → 31-33 µs: the
  rest is mostly the socket `write` syscall, one per subscriber and message); and a chunked fan-out
  (app/ws_connection.py: 64 sockets per loop turn) so the pipe's next step replaces the previous one in
  the outboxes not yet served instead of waiting behind the whole previous fan-out (p99 96-107 → 58-81 ms).
  The "delivered" row shows what coalescing costs: ~86-91 % of the steps reach each of 1,000 clients.
- **A full garbage collection took 65-85 ms with 1,000 connections open**, inside a job, in every
  3-job measurement. app/idle_gc.py makes automatic full collections 100x rarer and runs one when the
  worker has been idle for a second; the longest collection during the jobs is now 2-4 ms (the
  "longest garbage collection" rows). Found on the way: NiceGUI runs async start-up handlers as tasks,
  so a plain start-up hook runs before `engine.start` has built the worker; the collector's first
  version asked for the worker there and never started (the bench showed the default thresholds).
- **Overhead at 100 subscribers sits at 1.03-1.06 against a 1.05 target** (three full runs of this
  code: 1.043 and 1.064 with 7 pairs, 1.057 with 15; single pairs swing 0.93-1.13). Splitting one job
  (12 pairs, stamps from the generation process): at 0 subscribers the server costs 1.017x, of which
  the pipeline call itself 1.010x (the step callback and its pipe message) and ~10 ms outside it
  (HTTP, SQLite, PNG, events); at 100 subscribers 1.034-1.063x, of which the pipeline call 1.021-1.052x
  and ~17 ms outside it. The pipeline's own CPU time grows ~1.5 % and it sometimes waits 20-70 ms for
  a core while the loop and the bench's 100 clients run on the other. Running the server at nice 5 did
  not change the ratio (1.033) and wrecked the 1,000-subscriber latency (p99 137-289 ms).
- **The machine is noisy.** Two cores are shared with other work. The "event-loop thread on a CPU /
  waiting for one" rows come from the kernel's schedstat for the server's loop thread during each
  measured job: a large "waiting" share means the thread was runnable and no core was free. Figures
  swing between rounds (see the pair ratios); the fastest-run ratio is a second estimate.
- **Where the fan-out's time goes now** (py-spy at 1,000 subscribers): the socket `write` syscall is
  about half of each send; websockets' framing, Starlette's send wrappers and our outbox the rest.
  Before the changes above, wsproto's framing (~12 %) and a task wake-up per socket and message
  (Event set/wait, task step) were as large as the syscall.
- **permessage-deflate costs ~3x the memory and ~2x the latency.** Browsers and the `websockets`
  library offer it and uvicorn accepts it by default; wsproto then keeps a zlib compressor (and
  decompressor) per connection (the capacity rows with and without it) and compresses every message
  once per connection. The app runs with `ws_per_message_deflate=False` (app/server.py), which
  websockets-sansio honours too (the capacity rows with the extension offered are the same size).
- **A too-slow client never got its close frame** (fixed in app/websocket.py and app/ws_connection.py): after the outbox overflowed,
  `websocket.close()` waits behind the unread bytes, and the receive loop's next `receive_text()` raised
  Starlette's `WebSocketDisconnected`; the ASGI call ended with an error and uvicorn closed the socket
  without the 1013 frame. The endpoint now ends quietly and waits (up to 30 s) for the close frame.
  A client that never reads again still holds its socket until TCP gives up (ASGI can't abort it).
- **Queue gap**: the worker sends the next job to the generation process before it announces the new
  queue positions (it used to announce first: 3.7 ms median, 10.1 ms max from `generation_started` to
  the pipeline, now well under 1 ms). The part on the loop (complete → next `generation_started`) is
  the worker's bookkeeping (one `generation_queued` per waiting job, two `get_job` reads, `mark_running`).
- **Start-up**: the server process imports neither torch nor diffusers; the fork server that starts
  generation processes imports them (app/pipeline_imports.py) while the first page is already served.
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
                elif name == "studio":
                    rows += studio.run(ctx)  # its own server (with a loop probe) and chromium
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
