"""A small command line over the runtime, for operators and for trying it out.

    python -m runtime run [-d] [--rm] [--name N] [-e K=V] [-t] [-i] [--network none|host] IMAGE [CMD...]
    python -m runtime ps [-a] | logs [-f] [--tail N] C | stop [-t S] C | kill [-s SIG] C | start C
    python -m runtime exec C CMD... | rm [-f] C... | pause C | unpause C | inspect C
    python -m runtime images | import FILE [REF] [-c 'CMD ...'] | load FILE | tag SRC DST | rmi [-f] IMG
    python -m runtime gc

The state root is ``BERTH_ROOT`` (default /var/lib/berth). The console and the
Docker API are the main ways in; this is the engine seen directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from . import BerthError, ContainerSpec, NetworkSpec, Resources, Runtime


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    engine = Runtime()
    try:
        return options.handler(engine, options) or 0
    except BerthError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        return 130


def _run(engine: Runtime, o) -> int:
    spec = ContainerSpec(
        image=o.image, name=o.name or "", cmd=o.command or None, env=o.env, tty=o.tty, open_stdin=o.interactive,
        working_dir=o.workdir or "", user=o.user or "", hostname=o.hostname or "",
        network=NetworkSpec(mode=o.network), resources=Resources(memory=o.memory),
    )
    container = engine.create(spec)
    try:
        engine.start(container.id)
    except BerthError as failure:
        if o.rm:
            engine.remove(container.id, force=True)
        print(f"Error: {failure}", file=sys.stderr)
        return getattr(failure, "exit_code", 125)
    if o.detach:
        print(container.id)
        return 0
    for record in engine.logs(container.id, follow=True):
        stream = sys.stdout if record.stream == "stdout" else sys.stderr
        stream.buffer.write(record.data)
        stream.flush()
    code = engine.wait(container.id)
    if o.rm:
        engine.remove(container.id)
    return code


def _ps(engine: Runtime, o) -> None:
    print(f"{'CONTAINER ID':14}{'IMAGE':14}{'COMMAND':24}{'STATUS':22}NAMES")
    for c in engine.list():
        if not o.all and not c.running:
            continue
        command = " ".join([c.path, *c.args])[:22]
        status = c.state.status if c.running else f"exited ({c.state.exit_code})"
        print(f"{c.short_id:14}{c.image_id[7:19]:14}{command:24}{status:22}{c.name}")


def _logs(engine: Runtime, o) -> None:
    for record in engine.logs(o.container, follow=o.follow, tail=o.tail):
        stream = sys.stdout if record.stream == "stdout" else sys.stderr
        stream.buffer.write(record.data)
        stream.flush()


def _exec(engine: Runtime, o) -> int:
    result = engine.exec(o.container, o.command, tty=o.tty)
    sys.stdout.buffer.write(result.output)
    sys.stderr.buffer.write(result.errors)
    return result.exit_code


def _inspect(engine: Runtime, o) -> None:
    print(json.dumps([dataclasses.asdict(engine.get(ref)) for ref in o.containers], indent=2))


def _images(engine: Runtime, o) -> None:
    print(f"{'REPOSITORY:TAG':40}{'IMAGE ID':14}SIZE")
    for image in engine.images.list():
        for tag in image.repo_tags or ["<none>"]:
            print(f"{tag:40}{image.id[7:19]:14}{image.size / 1e6:.1f}MB")


def _each(action):
    def handler(engine: Runtime, o) -> None:
        for reference in o.containers:
            action(engine, reference, o)
            print(reference)
    return handler


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime", description="Berth's container engine")
    commands = parser.add_subparsers(required=True)

    run = commands.add_parser("run", help="create and start a container")
    run.add_argument("-d", "--detach", action="store_true")
    run.add_argument("--rm", action="store_true")
    run.add_argument("--name")
    run.add_argument("-e", "--env", action="append", default=[])
    run.add_argument("-t", "--tty", action="store_true")
    run.add_argument("-i", "--interactive", action="store_true")
    run.add_argument("-w", "--workdir")
    run.add_argument("-u", "--user")
    run.add_argument("--hostname")
    run.add_argument("--network", default="none", choices=["none", "host"])
    run.add_argument("-m", "--memory", type=int, default=0, help="bytes")
    run.add_argument("image")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(handler=_run)

    ps = commands.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true")
    ps.set_defaults(handler=_ps)

    logs = commands.add_parser("logs", help="PID 1's output")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--tail", type=int)
    logs.add_argument("container")
    logs.set_defaults(handler=_logs)

    execute = commands.add_parser("exec", help="run a command in a running container")
    execute.add_argument("-t", "--tty", action="store_true")
    execute.add_argument("container")
    execute.add_argument("command", nargs=argparse.REMAINDER)
    execute.set_defaults(handler=_exec)

    stop = commands.add_parser("stop")
    stop.add_argument("-t", "--time", type=int)
    stop.add_argument("containers", nargs="+")
    stop.set_defaults(handler=_each(lambda e, r, o: e.stop(r, o.time)))

    kill = commands.add_parser("kill")
    kill.add_argument("-s", "--signal", default="SIGKILL")
    kill.add_argument("containers", nargs="+")
    kill.set_defaults(handler=_each(lambda e, r, o: e.kill(r, o.signal)))

    remove = commands.add_parser("rm")
    remove.add_argument("-f", "--force", action="store_true")
    remove.add_argument("containers", nargs="+")
    remove.set_defaults(handler=_each(lambda e, r, o: e.remove(r, force=o.force)))

    for name, action in (("start", Runtime.start), ("pause", Runtime.pause), ("unpause", Runtime.unpause)):
        sub = commands.add_parser(name)
        sub.add_argument("containers", nargs="+")
        sub.set_defaults(handler=_each(lambda e, r, o, action=action: action(e, r)))

    inspect = commands.add_parser("inspect")
    inspect.add_argument("containers", nargs="+")
    inspect.set_defaults(handler=_inspect)

    commands.add_parser("images").set_defaults(handler=_images)

    imp = commands.add_parser("import", help="a rootfs tarball as an image")
    imp.add_argument("-c", "--change", action="append", default=[])
    imp.add_argument("file")
    imp.add_argument("reference", nargs="?")
    imp.set_defaults(handler=lambda e, o: print(e.images.import_rootfs(o.file, o.reference, o.change).id))

    load = commands.add_parser("load", help="a docker save / OCI layout archive")
    load.add_argument("file")
    load.set_defaults(handler=lambda e, o: [print(i.id, *i.repo_tags) for i in e.images.load(o.file)] and None)

    tag = commands.add_parser("tag")
    tag.add_argument("source")
    tag.add_argument("target")
    tag.set_defaults(handler=lambda e, o: e.images.tag(o.source, o.target))

    rmi = commands.add_parser("rmi")
    rmi.add_argument("-f", "--force", action="store_true")
    rmi.add_argument("image")
    rmi.set_defaults(handler=lambda e, o: print("\n".join(e.remove_image(o.image, o.force))))

    commands.add_parser("gc", help="remove what no container owns").set_defaults(
        handler=lambda e, o: print("\n".join(e.gc()) or "nothing to remove"))
    return parser


if __name__ == "__main__":
    sys.exit(main())
