#!/usr/bin/env python3
"""Static checks of everything playlake ships for running it: the Dockerfile,
docker-compose.yml, deploy/compose/*.toml, deploy/localstack/, deploy/prometheus/,
deploy/grafana/, deploy/kubernetes/ and deploy/iam/.

No Docker engine and no Kubernetes cluster exist on the test machines, so nothing
here is run; instead every file is parsed and cross-checked against the others and
against the code:

- images are pinned (a tag or digest, never `latest`); the image built from the
  Dockerfile is tagged with the workspace version;
- every file or directory mounted or COPY'd exists (and is not excluded by
  .dockerignore); the Dockerfile copies every workspace member and every file the
  binary compiles in (include_str!), builds a package that has the entrypoint binary,
  and runs it as a non-root user;
- every depends_on names a service (with a healthcheck when it waits for health);
- every playlake stage config validates with the real binary
  (`playlake --config F config`), every playlake command line parses with the real
  CLI (`... --help`), and the configs agree with each other (brokers, prefix,
  partitions) and with the services they name (broker, LocalStack, bucket, table);
- Prometheus scrape targets are exactly the playlake stage services, on the port
  their config's metrics_addr listens on (which is not loopback); `promtool check
  config` accepts the file; Grafana's datasource and dashboard provisioning point at
  what compose mounts and runs, and every metric a dashboard names exists in the code;
- Kubernetes probes are /healthz (liveness) and /readyz (readiness) on the port the
  config listens on, resources are set, ServiceAccounts and ConfigMap keys exist;
- IAM policies are valid JSON, Version 2012-10-17, with no `*` action or resource,
  grant exactly the AWS calls the code makes, on the resources the configs name.

Usage: check_deploy.py [--repo DIR] [--playlake BIN | --skip-binary] [--self-test]

--self-test copies the repository's deploy files to a temporary directory, breaks
them one way at a time (a missing mounted file, an unpinned image, ...) and checks
that every breakage is reported: the checks can fail.

Exit status: 0 when every check passed, 1 when any failed, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - reported, not raised
    print(
        "FAIL: PyYAML is missing; run tests/stack/install.sh (tests/requirements.txt)",
        file=sys.stderr,
    )
    sys.exit(1)

DEFAULT_METRICS_ADDR = "127.0.0.1:9464"
RUN_STAGES = {"process", "sink", "source"}
SINK_TABLES_DEFAULT = ["sessions", "viewers", "daily", "events", "errors"]
# Commands that serve /metrics, /healthz and /readyz on metrics_addr.
PLAYLAKE_SUBCOMMANDS_SERVING_HTTP = {"run", "source"}
IAM_STAGES = ("source", "process", "sink")


class Checker:
    def __init__(self, repo: Path, playlake: Path | None, quiet: bool = False):
        self.repo = repo
        self.playlake = playlake
        self.quiet = quiet
        self.failures: list[str] = []
        self.passes = 0
        self._config_cache: dict[str, dict | None] = {}

    # ---- reporting -------------------------------------------------------------
    def fail(self, where: str, message: str) -> None:
        self.failures.append(f"{where}: {message}")
        if not self.quiet:
            print(f"FAIL {where}: {message}")

    def ok(self, where: str, message: str) -> None:
        self.passes += 1
        if not self.quiet:
            print(f"ok   {where}: {message}")

    def check(self, cond: bool, where: str, message: str, failure: str | None = None) -> bool:
        if cond:
            self.ok(where, message)
        else:
            self.fail(where, failure or f"not true: {message}")
        return cond

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.repo))
        except ValueError:
            return str(path)

    # ---- helpers ---------------------------------------------------------------
    def load_yaml_docs(self, path: Path) -> list:
        try:
            with path.open() as f:
                return [d for d in yaml.safe_load_all(f) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            self.fail(self.rel(path), f"cannot parse YAML: {e}")
            return []

    def workspace(self) -> dict:
        with (self.repo / "Cargo.toml").open("rb") as f:
            return tomllib.load(f)

    def workspace_version(self) -> str:
        return self.workspace()["workspace"]["package"]["version"]

    def image_pinned(self, where: str, image: str) -> None:
        if not isinstance(image, str) or not image:
            self.fail(where, f"no image given ({image!r})")
            return
        if "@sha256:" in image:
            self.ok(where, f"image {image} pinned by digest")
            return
        name, _, tag = image.rpartition(":")
        if not name or "/" in tag:
            self.fail(where, f"image {image} has no tag: pin a version (never latest)")
        elif tag == "latest":
            self.fail(where, f"image {image} uses `latest`: pin a version")
        else:
            self.ok(where, f"image {image} pinned")

    def validate_config(self, where: str, text: str) -> dict | None:
        """The effective settings of a playlake TOML config, as `playlake config`
        prints them after merging defaults and validating (None when invalid)."""
        if text in self._config_cache:
            return self._config_cache[text]
        result: dict | None
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            self.fail(where, f"not valid TOML: {e}")
            self._config_cache[text] = None
            return None
        if self.playlake is None:
            # Only with --skip-binary (never under CI): parse, apply the defaults the
            # binary would, and say that the real validation did not run.
            print(f"SKIP {where}: not validated by the playlake binary (--skip-binary)")
            result = tomllib.loads(text)
            result.setdefault("metrics_addr", DEFAULT_METRICS_ADDR)
            self._config_cache[text] = result
            return result
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "playlake.toml"
            cfg.write_text(text)
            env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYLAKE_")}
            proc = subprocess.run(
                [str(self.playlake), "--config", str(cfg), "config"],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        if proc.returncode != 0:
            self.fail(where, f"`playlake config` rejects it: {proc.stderr.strip()}")
            result = None
        else:
            self.ok(where, "validated by the real binary (`playlake --config F config`)")
            result = tomllib.loads(proc.stdout)
        self._config_cache[text] = result
        return result

    def cli_parses(self, where: str, args: list[str]) -> bool:
        """Whether the real CLI accepts `args` (with --help appended, so nothing runs)."""
        if self.playlake is None:
            print(f"SKIP {where}: command line not parsed by the binary (--skip-binary)")
            return True
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYLAKE_")}
        # --config FILE need not exist for parsing; drop it so a container path is fine.
        cleaned = []
        skip = False
        for a in args:
            if skip:
                skip = False
                continue
            if a == "--config":
                skip = True
                continue
            cleaned.append(a)
        proc = subprocess.run(
            [str(self.playlake), *cleaned, "--help"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return self.check(
            proc.returncode == 0,
            where,
            f"`playlake {' '.join(args)}` parses with the real CLI",
            f"`playlake {' '.join(args)}` is rejected by the CLI: {proc.stderr.strip()[:400]}",
        )

    @staticmethod
    def split_addr(addr: str) -> tuple[str, int]:
        host, _, port = addr.rpartition(":")
        return host.strip("[]"), int(port)

    # ---- Dockerfile --------------------------------------------------------------
    def dockerfile_instructions(self, path: Path) -> list[tuple[str, str]]:
        lines = path.read_text().splitlines()
        out: list[tuple[str, str]] = []
        buf = ""
        for line in lines:
            stripped = line.strip()
            if not buf and (not stripped or stripped.startswith("#")):
                continue
            if buf and stripped.startswith("#"):
                continue
            if stripped.endswith("\\"):
                buf += stripped[:-1] + " "
                continue
            buf += stripped
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
        return out

    def dockerignore_patterns(self) -> list[str]:
        path = self.repo / ".dockerignore"
        if not path.exists():
            return []
        pats = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                pats.append(line.lstrip("/").rstrip("/"))
        return pats

    @staticmethod
    def ignored(rel: str, patterns: list[str]) -> str | None:
        parts = rel.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for pat in patterns:
            if pat.startswith("!"):
                continue
            for p in prefixes:
                if fnmatch.fnmatchcase(p, pat) or (
                    pat.startswith("**/") and fnmatch.fnmatchcase(p.split("/")[-1], pat[3:])
                ):
                    return pat
        return None

    def check_dockerfile(self) -> dict:
        where = "Dockerfile"
        path = self.repo / "Dockerfile"
        info: dict = {"exposed": set(), "entrypoint": None}
        if not self.check(path.exists(), where, "exists"):
            return info
        instructions = self.dockerfile_instructions(path)
        stages: list[str] = []
        copied: list[str] = []
        user_after_last_from = None
        build_packages: list[str] = []
        patterns = self.dockerignore_patterns()
        for word, rest in instructions:
            if word == "FROM":
                m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
                image, name = m.group(1), m.group(2)
                if image in stages:
                    self.ok(where, f"FROM {image} is an earlier stage")
                else:
                    self.image_pinned(f"{where} FROM", image)
                if name:
                    stages.append(name)
                user_after_last_from = None
            elif word in ("COPY", "ADD"):
                tokens = rest.split()
                flags = [t for t in tokens if t.startswith("--")]
                args = [t for t in tokens if not t.startswith("--")]
                if rest.lstrip().startswith("["):
                    args = json.loads(rest[rest.index("[") :])
                from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
                if from_stage is not None:
                    self.check(
                        from_stage in stages,
                        where,
                        f"COPY --from={from_stage} names a build stage",
                        f"COPY --from={from_stage}: no stage of that name before it",
                    )
                    continue
                for src in args[:-1]:
                    src_path = self.repo / src
                    if self.check(
                        src_path.exists(),
                        where,
                        f"{word} source {src} exists",
                        f"{word} source {src} does not exist in the repository",
                    ):
                        pat = self.ignored(src, patterns)
                        self.check(
                            pat is None,
                            where,
                            f"{word} source {src} is not excluded by .dockerignore",
                            f"{word} source {src} is excluded by .dockerignore pattern {pat!r}",
                        )
                    copied.append(src.rstrip("/"))
            elif word == "RUN":
                for m in re.finditer(r"cargo\s+build\b([^&;]*)", rest):
                    pm = re.search(r"(?:-p|--package)\s+(\S+)", m.group(1))
                    if pm:
                        build_packages.append(pm.group(1))
            elif word == "USER":
                user_after_last_from = rest.split(":")[0]
            elif word == "EXPOSE":
                for p in rest.split():
                    info["exposed"].add(int(p.split("/")[0]))
            elif word == "ENTRYPOINT":
                try:
                    info["entrypoint"] = json.loads(rest)
                except json.JSONDecodeError:
                    info["entrypoint"] = rest.split()
        self.check(
            user_after_last_from not in (None, "0", "root"),
            where,
            f"the runtime stage runs as a non-root user ({user_after_last_from})",
            "the runtime stage has no USER, or runs as root",
        )
        entry = info["entrypoint"] or []
        self.check(
            bool(entry) and Path(entry[0]).name == "playlake",
            where,
            f"ENTRYPOINT is playlake ({entry})",
        )
        # Every workspace member copied (cargo loads the whole workspace).
        members = self.workspace()["workspace"].get("members", [])
        covered = lambda p: any(p == c or p.startswith(c + "/") or c == "." for c in copied)  # noqa: E731
        for member in members:
            self.check(
                covered(member),
                where,
                f"workspace member {member} is copied into the builder",
                f"workspace member {member} is not copied: cargo cannot load the workspace",
            )
        for f in ("Cargo.toml", "Cargo.lock"):
            self.check(covered(f), where, f"{f} is copied into the builder")
        # Files compiled in from outside a member (include_str!/include_bytes!).
        for member in members:
            for rs in sorted((self.repo / member / "src").rglob("*.rs")):
                text = rs.read_text(errors="replace")
                for m in re.finditer(r"include_(?:str|bytes)!\(\s*(?:concat!\(\s*)?\"([^\"]+)\"", text):
                    target = (rs.parent / m.group(1)).resolve()
                    try:
                        rel = str(target.relative_to(self.repo.resolve()))
                    except ValueError:
                        self.fail(where, f"{self.rel(rs)} includes {m.group(1)}, outside the repository")
                        continue
                    ok = covered(rel) and self.ignored(rel, patterns) is None
                    self.check(
                        ok,
                        where,
                        f"{rel} (compiled in by {self.rel(rs)}) is in the build context and copied",
                        f"{rel} (compiled in by {self.rel(rs)}) is not copied into the builder",
                    )
        # The package built has a binary named like the entrypoint.
        packages = self.workspace_packages()
        for pkg in build_packages:
            bins = packages.get(pkg)
            self.check(
                bins is not None,
                where,
                f"cargo build -p {pkg}: a workspace package",
                f"cargo build -p {pkg}: no workspace package has that name",
            )
            if bins is not None and entry:
                self.check(
                    Path(entry[0]).name in bins,
                    where,
                    f"package {pkg} has the binary {Path(entry[0]).name}",
                )
        self.check(bool(build_packages), where, "builds a package with cargo build -p")
        return info

    def workspace_packages(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for member in self.workspace()["workspace"].get("members", []):
            manifest = self.repo / member / "Cargo.toml"
            if not manifest.exists():
                self.fail("Cargo.toml", f"workspace member {member} has no Cargo.toml")
                continue
            with manifest.open("rb") as f:
                data = tomllib.load(f)
            name = data.get("package", {}).get("name")
            bins = {b["name"] for b in data.get("bin", []) if "name" in b}
            if (self.repo / member / "src" / "main.rs").exists():
                bins.add(name)
            out[name] = bins
        return out

    # ---- docker-compose.yml ------------------------------------------------------
    @staticmethod
    def volume_pairs(service: dict) -> list[tuple[str, str]]:
        pairs = []
        for v in service.get("volumes", []) or []:
            if isinstance(v, str):
                parts = v.split(":")
                if len(parts) >= 2:
                    pairs.append((parts[0], parts[1]))
                else:
                    pairs.append(("", parts[0]))
            elif isinstance(v, dict):
                pairs.append((v.get("source", ""), v.get("target", "")))
        return pairs

    @staticmethod
    def env_of(service: dict) -> dict[str, str]:
        env = service.get("environment") or {}
        if isinstance(env, list):
            return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        return {k: "" if v is None else str(v) for k, v in env.items()}

    @staticmethod
    def container_ports(service: dict) -> set[int]:
        ports = set()
        for p in service.get("ports", []) or []:
            if isinstance(p, dict):
                ports.add(int(p["target"]))
            else:
                ports.add(int(str(p).split(":")[-1].split("/")[0]))
        for p in service.get("expose", []) or []:
            ports.add(int(str(p).split("/")[0]))
        return ports

    def check_compose(self, docker: dict) -> None:
        path = self.repo / "docker-compose.yml"
        where = "docker-compose.yml"
        docs = self.load_yaml_docs(path)
        if not docs:
            self.fail(where, "empty or unparsable")
            return
        compose = docs[0]
        services: dict = compose.get("services") or {}
        self.check(bool(services), where, f"{len(services)} services")
        named_volumes = set((compose.get("volumes") or {}).keys())
        version = self.workspace_version()
        playlake_services: dict[str, dict] = {}

        for name, svc in services.items():
            w = f"{where} service {name}"
            build = svc.get("build")
            if build is not None:
                ctx = build if isinstance(build, str) else build.get("context", ".")
                dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
                self.check(
                    (self.repo / ctx / dockerfile).exists(),
                    w,
                    f"build {ctx}/{dockerfile} exists",
                )
                image = svc.get("image", "")
                self.image_pinned(w, image)
                self.check(
                    image.rpartition(":")[2] == version,
                    w,
                    f"the image built here is tagged with the workspace version {version}",
                    f"image {image!r} should be tagged {version} (workspace version)",
                )
                if (self.repo / ctx / dockerfile).resolve() == (self.repo / "Dockerfile").resolve():
                    playlake_services[name] = svc
            else:
                self.image_pinned(w, svc.get("image", ""))
            # Mounts.
            for src, target in self.volume_pairs(svc):
                if src.startswith(".") or src.startswith("/"):
                    p = (self.repo / src).resolve() if src.startswith(".") else Path(src)
                    self.check(
                        p.exists(),
                        w,
                        f"mounted {src} exists",
                        f"mounted {src} (at {target}) does not exist in the repository",
                    )
                elif src:
                    self.check(
                        src in named_volumes,
                        w,
                        f"named volume {src} is declared",
                        f"volume {src} is neither a path nor a declared named volume",
                    )
            # depends_on.
            deps = svc.get("depends_on") or {}
            if isinstance(deps, list):
                deps = {d: {"condition": "service_started"} for d in deps}
            for dep, spec in deps.items():
                if not self.check(
                    dep in services,
                    w,
                    f"depends_on {dep} is a service",
                    f"depends_on names {dep!r}, which is not a service",
                ):
                    continue
                cond = (spec or {}).get("condition", "service_started")
                self.check(
                    cond in ("service_started", "service_healthy", "service_completed_successfully"),
                    w,
                    f"depends_on {dep}: condition {cond}",
                )
                if cond == "service_healthy":
                    self.check(
                        bool(services[dep].get("healthcheck")),
                        w,
                        f"{dep}, waited for as healthy, has a healthcheck",
                        f"waits for {dep} to be healthy but {dep} has no healthcheck",
                    )
        self.check_depends_cycles(services)

        # Playlake services: command line, config file, metrics and health.
        run_services: dict[str, dict] = {}
        configs: dict[str, dict] = {}
        for name, svc in playlake_services.items():
            w = f"{where} service {name}"
            cmd = svc.get("command") or []
            if isinstance(cmd, str):
                cmd = cmd.split()
            cmd = [str(c) for c in cmd]
            self.cli_parses(w, cmd)
            subcommand = next((c for i, c in enumerate(cmd) if not c.startswith("-") and (i == 0 or cmd[i - 1] != "--config")), None)
            if "--config" not in cmd:
                self.fail(w, "runs playlake without --config: put its settings in deploy/compose/")
                continue
            cfg_target = cmd[cmd.index("--config") + 1]
            mounts = {t: s for s, t in self.volume_pairs(svc)}
            src = mounts.get(cfg_target)
            if not self.check(
                src is not None,
                w,
                f"--config {cfg_target} is mounted",
                f"--config {cfg_target} is not a mount target of the service",
            ):
                continue
            cfg_path = (self.repo / src).resolve()
            if not cfg_path.is_file():
                continue  # reported above as a missing mount
            self.check(
                self.rel(cfg_path).startswith("deploy/compose/"),
                w,
                f"config {self.rel(cfg_path)} lives in deploy/compose/",
            )
            settings = self.validate_config(f"{self.rel(cfg_path)} (service {name})", cfg_path.read_text())
            if settings is None:
                continue
            configs[name] = settings
            if subcommand == "run":
                self.check_run_section(f"{self.rel(cfg_path)}", tomllib.loads(cfg_path.read_text()))
            if subcommand in PLAYLAKE_SUBCOMMANDS_SERVING_HTTP:
                run_services[name] = settings
                host, port = self.split_addr(settings["metrics_addr"])
                self.check(
                    host in ("0.0.0.0", "::"),
                    w,
                    f"metrics_addr {settings['metrics_addr']} listens on every interface",
                    f"metrics_addr {settings['metrics_addr']} is not reachable from other containers: set 0.0.0.0:{port}",
                )
                self.check(
                    port in docker.get("exposed", set()),
                    w,
                    f"metrics port {port} is EXPOSEd by the Dockerfile",
                )
                published = self.container_ports(svc)
                self.check(
                    not published or port in published,
                    w,
                    f"published container ports {sorted(published)} include the metrics port {port}",
                )
                hc = svc.get("healthcheck") or {}
                test = " ".join(str(t) for t in (hc.get("test") or []))
                m = re.search(r"https?://[^/\s:]+:(\d+)(/\S*)", test)
                if self.check(bool(m), w, "has an HTTP healthcheck on the metrics server"):
                    self.check(
                        int(m.group(1)) == port and m.group(2) in ("/readyz", "/healthz"),
                        w,
                        f"healthcheck {m.group(0)} is /readyz or /healthz on the metrics port {port}",
                    )
            self.check_service_endpoints(w, svc, settings, services)

        self.check_configs_agree(configs, services)
        self.check_localstack(services, configs)
        self.check_prometheus(services, run_services)
        self.check_grafana(services)

    def check_run_section(self, where: str, raw: dict) -> None:
        run = raw.get("run", {})
        stages = run.get("stages", sorted(RUN_STAGES))
        self.check(
            bool(stages) and set(stages) <= RUN_STAGES,
            where,
            f"[run] stages {stages} are stages `playlake run` starts",
            f"[run] stages {stages}: choose from {sorted(RUN_STAGES)}",
        )
        deadline = run.get("shutdown_deadline_seconds", 30)
        self.check(1 <= deadline <= 3600, where, f"[run] shutdown_deadline_seconds {deadline} in 1..3600")

    def check_depends_cycles(self, services: dict) -> None:
        graph = {}
        for name, svc in services.items():
            deps = svc.get("depends_on") or {}
            graph[name] = [d for d in (deps if isinstance(deps, list) else deps.keys()) if d in services]
        state: dict[str, int] = {}

        def visit(n: str, stack: list[str]) -> bool:
            if state.get(n) == 1:
                self.fail("docker-compose.yml", f"depends_on cycle: {' -> '.join(stack + [n])}")
                return False
            if state.get(n) == 2:
                return True
            state[n] = 1
            ok = all(visit(d, stack + [n]) for d in graph[n])
            state[n] = 2
            return ok

        if all(visit(n, []) for n in graph):
            self.ok("docker-compose.yml", "depends_on has no cycle")

    def check_service_endpoints(self, w: str, svc: dict, settings: dict, services: dict) -> None:
        for broker in settings.get("brokers", "").split(","):
            host, port = self.split_addr(broker)
            if self.check(host in services, w, f"broker {broker} is a compose service",
                          f"broker {broker}: {host} is not a compose service"):
                cmdline = " ".join(str(c) for c in (services[host].get("command") or []))
                self.check(
                    re.search(rf"--advertise-kafka-addr\s+\S*\b{re.escape(host)}:{port}\b", cmdline) is not None,
                    w,
                    f"{host} advertises {host}:{port} to other containers",
                    f"{host} does not advertise {host}:{port} (--advertise-kafka-addr)",
                )
        env = self.env_of(svc)
        endpoint = env.get("AWS_ENDPOINT_URL")
        dyn = settings.get("source", {}).get("dynamodb", {}).get("endpoint_url")
        for url in filter(None, [endpoint, dyn]):
            m = re.match(r"https?://([^:/]+):(\d+)", url)
            if self.check(bool(m) and m.group(1) in services, w, f"AWS endpoint {url} is a compose service"):
                target = services[m.group(1)]
                self.check(
                    int(m.group(2)) in self.container_ports(target),
                    w,
                    f"{m.group(1)} listens on {m.group(2)}",
                )
        if str(settings.get("lake", "")).startswith("s3://") and endpoint and endpoint.startswith("http://"):
            self.check(
                env.get("AWS_ALLOW_HTTP", "").lower() == "true",
                w,
                "AWS_ALLOW_HTTP=true (object_store refuses plain http to a non-loopback host otherwise)",
            )

    def check_configs_agree(self, configs: dict[str, dict], services: dict) -> None:
        where = "deploy/compose/*.toml"
        for key in ("brokers", "topic_prefix"):
            values = {n: c.get(key) for n, c in configs.items()}
            self.check(
                len(set(values.values())) <= 1,
                where,
                f"every service uses the same {key} ({next(iter(values.values()), None)})",
                f"services disagree on {key}: {values}",
            )
        parts = {n: c.get("topics", {}).get("partitions") for n, c in configs.items()}
        self.check(len(set(parts.values())) <= 1, where, f"every service creates topics with the same partitions {parts}")
        lakes = {n: c.get("lake") for n, c in configs.items() if "run" in " ".join(map(str, services[n].get("command", [])))}
        self.check(len(set(lakes.values())) <= 1, where, f"the stages share one lake {set(lakes.values())}")

    def check_localstack(self, services: dict, configs: dict[str, dict]) -> None:
        ready_dirs = []
        for name, svc in services.items():
            for src, target in self.volume_pairs(svc):
                if target.rstrip("/") == "/etc/localstack/init/ready.d":
                    ready_dirs.append((name, (self.repo / src).resolve()))
        if not self.check(bool(ready_dirs), "docker-compose.yml", "LocalStack mounts a ready.d init directory"):
            return
        scripts = []
        for name, d in ready_dirs:
            if d.is_dir():
                for s in sorted(d.glob("*.sh")):
                    scripts.append(s)
                    self.check(
                        os.access(s, os.X_OK) and s.read_text().startswith("#!"),
                        self.rel(s),
                        "executable with a shebang (LocalStack runs it as is)",
                    )
                    proc = subprocess.run(["bash", "-n", str(s)], capture_output=True, text=True)
                    self.check(proc.returncode == 0, self.rel(s), "bash -n accepts it", proc.stderr.strip())
        text = "\n".join(s.read_text() for s in scripts)
        self.check(bool(scripts), "deploy/localstack", "init scripts exist")
        for name, c in configs.items():
            lake = str(c.get("lake", ""))
            if lake.startswith("s3://") and "run" in " ".join(map(str, services[name].get("command", []))):
                bucket = lake[5:].split("/")[0]
                self.check(
                    re.search(rf"\b{re.escape(bucket)}\b", text) is not None and "s3 mb" in text,
                    "deploy/localstack",
                    f"the init script creates bucket {bucket} (lake of {name})",
                )
            table = c.get("source", {}).get("dynamodb", {}).get("table")
            if table:
                self.check(
                    re.search(rf"\b{re.escape(table)}\b", text) is not None
                    and "create-table" in text
                    and re.search(r"StreamEnabled=true,StreamViewType=NEW_(AND_OLD_)?IMAGES?", text) is not None,
                    "deploy/localstack",
                    f"the init script creates table {table} with a stream that has new images (source {name})",
                )
        for name, svc in services.items():
            for src, _ in self.volume_pairs(svc):
                p = (self.repo / src)
                if p.is_file() and p.suffix == ".sh":
                    proc = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
                    self.check(proc.returncode == 0, self.rel(p), "bash -n accepts it", proc.stderr.strip())

    def mounted_file(self, services: dict, service: str, target: str) -> Path | None:
        for src, t in self.volume_pairs(services.get(service, {})):
            if t == target:
                return (self.repo / src).resolve()
        return None

    def check_prometheus(self, services: dict, run_services: dict[str, dict]) -> None:
        prom = next((n for n, s in services.items() if "prometheus" in str(s.get("image", "")).split("/")[-1]), None)
        if not self.check(prom is not None, "docker-compose.yml", "a Prometheus service runs"):
            return
        cmd = [str(c) for c in services[prom].get("command", [])]
        cfg_target = next((c.split("=", 1)[1] for c in cmd if c.startswith("--config.file=")), "/etc/prometheus/prometheus.yml")
        cfg = self.mounted_file(services, prom, cfg_target)
        if not self.check(cfg is not None and cfg.is_file(), "docker-compose.yml", f"Prometheus config {cfg_target} is mounted from the repository"):
            return
        where = self.rel(cfg)
        docs = self.load_yaml_docs(cfg)
        if not docs:
            return
        targets: dict[str, str] = {}
        jobs = set()
        for job in docs[0].get("scrape_configs", []):
            jobs.add(job.get("job_name"))
            self.check(job.get("metrics_path", "/metrics") == "/metrics", where, f"job {job.get('job_name')} scrapes /metrics")
            for sc in job.get("static_configs", []):
                for t in sc.get("targets", []):
                    targets[t] = job.get("job_name")
        for t in targets:
            host, port = self.split_addr(t)
            if not self.check(host in services, where, f"target {t} is a compose service", f"target {t}: {host} is not a compose service"):
                continue
            settings = run_services.get(host)
            if not self.check(settings is not None, where, f"target {t} runs a playlake stage (serves /metrics)",
                              f"target {t}: {host} serves no metrics (not a playlake stage)"):
                continue
            _, cport = self.split_addr(settings["metrics_addr"])
            self.check(port == cport, where, f"target {t} is the port {host}'s metrics_addr listens on",
                       f"target {t}: {host} listens on {settings['metrics_addr']}, not port {port}")
        for name in run_services:
            self.check(any(self.split_addr(t)[0] == name for t in targets), where, f"playlake service {name} is scraped",
                       f"playlake service {name} serves metrics but no scrape target names it")
        # The dashboards select job="..."; those jobs must exist.
        for dash in sorted((self.repo / "deploy/grafana/dashboards").glob("*.json")):
            text = dash.read_text()
            for job in set(re.findall(r'job\s*=~?\s*\\?"([^"\\]+)\\?"', text)):
                self.check(job in jobs, where, f"job {job} (used by {dash.name}) is scraped")
        promtool = shutil.which("promtool")
        custom = os.environ.get("PLAYLAKE_TEST_PROMETHEUS")  # the metrics test's override
        if promtool is None and custom and (Path(custom).parent / "promtool").exists():
            promtool = str(Path(custom).parent / "promtool")
        if promtool is None:
            if os.environ.get("CI", "").lower() in ("true", "1"):
                self.fail(where, "promtool is not installed but CI is set (tests/stack/install.sh installs prometheus)")
            else:
                print(f"SKIP {where}: promtool not installed; not checked by `promtool check config`")
        else:
            proc = subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True, text=True)
            self.check(proc.returncode == 0, where, "promtool check config accepts it", (proc.stdout + proc.stderr).strip())

    def check_grafana(self, services: dict) -> None:
        graf = next((n for n, s in services.items() if "grafana" in str(s.get("image", "")).split(":")[0]), None)
        if not self.check(graf is not None, "docker-compose.yml", "a Grafana service runs"):
            return
        mounts = {t.rstrip("/"): (self.repo / s).resolve() for s, t in self.volume_pairs(services[graf])}
        prov = "/etc/grafana/provisioning"
        ds_dir = mounts.get(f"{prov}/datasources") or (mounts.get(prov) / "datasources" if mounts.get(prov) else None)
        db_dir = mounts.get(f"{prov}/dashboards") or (mounts.get(prov) / "dashboards" if mounts.get(prov) else None)
        uids = set()
        if self.check(ds_dir is not None and ds_dir.is_dir(), "docker-compose.yml", "Grafana datasources provisioning is mounted"):
            for f in sorted(ds_dir.glob("*.y*ml")):
                for doc in self.load_yaml_docs(f):
                    for ds in doc.get("datasources", []):
                        uids.add(ds.get("uid"))
                        m = re.match(r"https?://([^:/]+):(\d+)", str(ds.get("url", "")))
                        if self.check(bool(m) and m.group(1) in services, self.rel(f), f"datasource {ds.get('name')} url {ds.get('url')} is a compose service"):
                            cmd = " ".join(map(str, services[m.group(1)].get("command", [])))
                            lm = re.search(r"--web\.listen-address=\S*:(\d+)", cmd)
                            listen = int(lm.group(1)) if lm else 9090
                            self.check(int(m.group(2)) == listen, self.rel(f), f"datasource port {m.group(2)} is where {m.group(1)} listens ({listen})")
        dash_dirs: list[Path] = []
        if self.check(db_dir is not None and db_dir.is_dir(), "docker-compose.yml", "Grafana dashboard provisioning is mounted"):
            for f in sorted(db_dir.glob("*.y*ml")):
                for doc in self.load_yaml_docs(f):
                    for provider in doc.get("providers", []):
                        path = str(provider.get("options", {}).get("path", "")).rstrip("/")
                        src = mounts.get(path)
                        if self.check(src is not None and src.is_dir(), self.rel(f),
                                      f"provider {provider.get('name')} path {path} is mounted from the repository",
                                      f"provider path {path} is not a directory mounted into the Grafana service"):
                            files = sorted(src.glob("*.json"))
                            self.check(bool(files), self.rel(f), f"{len(files)} dashboards under {self.rel(src)}")
                            dash_dirs.append(src)
        metric_sources = self.metric_names_in_code()
        seen_uids = set()
        for d in dash_dirs:
            for f in sorted(d.glob("*.json")):
                w = self.rel(f)
                try:
                    dash = json.loads(f.read_text())
                except json.JSONDecodeError as e:
                    self.fail(w, f"not valid JSON: {e}")
                    continue
                uid = dash.get("uid")
                self.check(bool(uid) and uid not in seen_uids, w, f"dashboard uid {uid} is unique")
                seen_uids.add(uid)
                panels = dash.get("panels", [])
                self.check(bool(panels), w, f"{len(panels)} panels")
                for p in panels:
                    for obj in [p] + list(p.get("targets", [])):
                        ds = obj.get("datasource")
                        if isinstance(ds, dict) and ds.get("uid") and not str(ds["uid"]).startswith("$"):
                            if ds["uid"] not in uids:
                                self.fail(w, f"panel {p.get('title')!r} uses datasource uid {ds['uid']!r}, not provisioned ({sorted(uids)})")
                    for t in p.get("targets", []):
                        expr = t.get("expr", "")
                        if not expr:
                            self.fail(w, f"panel {p.get('title')!r} has a target without expr")
                        for metric in set(re.findall(r"(?<![A-Za-z0-9_])playlake_[A-Za-z0-9_]+", expr)):
                            base = re.sub(r"_(bucket|sum|count)$", "", metric)
                            if metric not in metric_sources and base not in metric_sources:
                                self.fail(w, f"panel {p.get('title')!r} uses {metric}, which no code registers")
                self.ok(w, "every datasource uid is provisioned and every metric named exists in the code")

    def metric_names_in_code(self) -> set[str]:
        names = set()
        for top in ("pipeline", "connectors"):
            for rs in (self.repo / top).rglob("*.rs"):
                if "target" in rs.parts:
                    continue
                names.update(re.findall(r"\"(playlake_[A-Za-z0-9_]+)\"", rs.read_text(errors="replace")))
        return names

    # ---- Kubernetes ---------------------------------------------------------------
    @staticmethod
    def memory_bytes(q: str) -> int:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?", str(q))
        if not m:
            raise ValueError(q)
        mult = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
                "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}[m.group(2)]
        return int(float(m.group(1)) * mult)

    def check_kubernetes(self) -> dict[str, dict]:
        kdir = self.repo / "deploy/kubernetes"
        stage_configs: dict[str, dict] = {}
        if not self.check(kdir.is_dir(), "deploy/kubernetes", "exists"):
            return stage_configs
        files = sorted(kdir.glob("*.yaml")) + sorted(kdir.glob("*.yml"))
        objects = []
        kustomization = None
        for f in files:
            for doc in self.load_yaml_docs(f):
                if doc.get("kind") == "Kustomization":
                    kustomization = (f, doc)
                else:
                    self.check(bool(doc.get("apiVersion")) and bool(doc.get("kind")) and bool(doc.get("metadata", {}).get("name")),
                               self.rel(f), f"{doc.get('kind')} {doc.get('metadata', {}).get('name')} has apiVersion, kind, name")
                    objects.append((f, doc))
        if kustomization:
            listed = set(kustomization[1].get("resources", []))
            present = {f.name for f in files if f != kustomization[0]}
            self.check(listed == present, self.rel(kustomization[0]), f"resources list every manifest {sorted(present)}",
                       f"resources {sorted(listed)} differ from the manifests present {sorted(present)}")
        by_kind: dict[str, dict[str, dict]] = {}
        for f, doc in objects:
            by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
        configmaps = by_kind.get("ConfigMap", {})
        accounts = by_kind.get("ServiceAccount", {})
        services = by_kind.get("Service", {})
        version = self.workspace_version()
        deployments = by_kind.get("Deployment", {})
        self.check(len(deployments) >= 3, "deploy/kubernetes", f"a Deployment per stage ({sorted(deployments)})")
        validated: dict[tuple[str, str], dict | None] = {}
        for name, dep in deployments.items():
            w = f"deploy/kubernetes Deployment {name}"
            spec = dep["spec"]["template"]["spec"]
            labels = dep["spec"]["template"]["metadata"].get("labels", {})
            selector = dep["spec"].get("selector", {}).get("matchLabels", {})
            self.check(all(labels.get(k) == v for k, v in selector.items()), w, "selector matches the pod labels")
            sa = spec.get("serviceAccountName")
            if self.check(sa in accounts, w, f"ServiceAccount {sa} exists", f"ServiceAccount {sa!r} is not defined"):
                self.check("eks.amazonaws.com/role-arn" in (accounts[sa]["metadata"].get("annotations") or {}), w,
                           f"ServiceAccount {sa} carries an IRSA role annotation")
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for c in spec.get("containers", []):
                cw = f"{w} container {c['name']}"
                image = c.get("image", "")
                self.image_pinned(cw, image)
                if "playlake" in image.split("/")[-1]:
                    self.check(image.rpartition(":")[2] == version, cw, f"image tagged with the workspace version {version}")
                args = [str(a) for a in (c.get("command", [])[1:] if c.get("command") else []) + c.get("args", [])]
                self.cli_parses(cw, args)
                subcommand = next((a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] != "--config")), None)
                # Resources.
                res = c.get("resources", {})
                self.check(bool(res.get("requests", {}).get("cpu")) and bool(res.get("requests", {}).get("memory")), cw, "requests cpu and memory")
                self.check(bool(res.get("limits", {}).get("memory")), cw, "limits memory")
                # Config: --config points into a mounted ConfigMap key.
                if "--config" not in args:
                    self.fail(cw, "runs playlake without --config")
                    continue
                cfg_path = args[args.index("--config") + 1]
                settings = None
                raw = None
                for vm in c.get("volumeMounts", []):
                    mp = vm["mountPath"].rstrip("/")
                    if not cfg_path.startswith(mp + "/"):
                        continue
                    vol = volumes.get(vm["name"], {})
                    cm = vol.get("configMap")
                    if not self.check(cm is not None, cw, f"--config {cfg_path} is in a ConfigMap volume"):
                        continue
                    rel = cfg_path[len(mp) + 1:]
                    key = next((i["key"] for i in cm.get("items", []) if i["path"] == rel), rel)
                    cmap = configmaps.get(cm["name"])
                    if not self.check(cmap is not None and key in (cmap.get("data") or {}), cw,
                                      f"ConfigMap {cm['name']} has key {key}",
                                      f"ConfigMap {cm['name']!r} key {key!r} does not exist"):
                        continue
                    text = cmap["data"][key]
                    if (cm["name"], key) not in validated:
                        validated[(cm["name"], key)] = self.validate_config(f"deploy/kubernetes/configmap {cm['name']}[{key}]", text)
                    settings = validated[(cm["name"], key)]
                    raw = tomllib.loads(text)
                if settings is None:
                    continue
                stage = "source" if subcommand == "source" else None
                if subcommand == "run":
                    self.check_run_section(f"configmap[{name}]", raw)
                    stages = raw.get("run", {}).get("stages", ["process", "sink"])
                    stage = stages[0] if len(stages) == 1 else None
                if stage:
                    stage_configs[stage] = {"settings": settings, "raw": raw, "env": {e["name"]: e.get("value") for e in c.get("env", [])}}
                # Probes and ports.
                ports = {p.get("name"): int(p["containerPort"]) for p in c.get("ports", [])}
                if subcommand in PLAYLAKE_SUBCOMMANDS_SERVING_HTTP:
                    host, port = self.split_addr(settings["metrics_addr"])
                    self.check(host in ("0.0.0.0", "::"), cw, f"metrics_addr {settings['metrics_addr']} is reachable by the kubelet",
                               f"metrics_addr {settings['metrics_addr']} is loopback: probes and Prometheus cannot reach it")
                    self.check(port in ports.values(), cw, f"containerPort {port} (metrics_addr) is declared")
                    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                        get = (c.get(probe) or {}).get("httpGet")
                        if not self.check(get is not None, cw, f"{probe} is an httpGet"):
                            continue
                        pport = get.get("port")
                        pport = ports.get(pport) if isinstance(pport, str) else pport
                        self.check(get.get("path") == path and pport == port, cw,
                                   f"{probe} GET {path} on the metrics port {port}",
                                   f"{probe} is GET {get.get('path')} on port {get.get('port')}; want {path} on {port}")
                    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
                    self.check(str(ann.get("prometheus.io/port")) == str(port) and ann.get("prometheus.io/scrape") == "true",
                               w, f"pods annotated for scraping on port {port}")
                    self.check(any(svc["spec"].get("selector", {}) and all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
                                   and any((ports.get(p.get("targetPort")) if isinstance(p.get("targetPort"), str) else p.get("targetPort")) == port
                                           for p in svc["spec"].get("ports", []))
                                   for svc in services.values()),
                               w, f"a Service selects these pods on the metrics port {port}")
                    deadline = raw.get("run", {}).get("shutdown_deadline_seconds", 30)
                    grace = spec.get("terminationGracePeriodSeconds", 30)
                    self.check(grace > deadline, w, f"terminationGracePeriodSeconds {grace} > shutdown_deadline_seconds {deadline}")
                else:
                    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                        self.check("httpGet" not in (c.get(probe) or {}), cw,
                                   f"no HTTP {probe}: `playlake {subcommand}` serves no HTTP endpoint",
                                   f"{probe} is an httpGet but `playlake {subcommand}` serves no HTTP endpoint")
                if stage == "sink":
                    budget = raw.get("sink", {}).get("memory_budget_bytes", 1 << 30)
                    limit = self.memory_bytes(res.get("limits", {}).get("memory", "0"))
                    self.check(limit > budget, cw, f"memory limit {limit} > sink memory_budget_bytes {budget}")
        readme = kdir / "README.md"
        text = readme.read_text() if readme.exists() else ""
        self.check("idle" in text and "partition" in text and "shard" in text, "deploy/kubernetes/README.md",
                   "says that replicas beyond the partition (shard) count idle")
        return stage_configs

    # ---- IAM --------------------------------------------------------------------------
    @staticmethod
    def strip_tests(text: str) -> str:
        i = text.find("#[cfg(test)]")
        return text if i < 0 else text[:i]

    def dynamodb_actions_in_code(self) -> set[str]:
        ops = set()
        for rs in sorted((self.repo / "connectors/dynamodb/src").glob("*.rs")):
            text = self.strip_tests(rs.read_text())
            for m in re.finditer(r"\.\s*(describe_table|create_table|update_table|delete_table|scan|query|get_item|put_item|update_item|delete_item|batch_get_item|batch_write_item|transact_get_items|transact_write_items|list_tables|describe_stream|get_shard_iterator|get_records|list_streams|describe_time_to_live)\(\)", text):
                ops.add("dynamodb:" + "".join(p.capitalize() for p in m.group(1).split("_")))
        return ops

    OBJECT_STORE_ACTIONS = {
        "list": {"s3:ListBucket"},
        "list_with_delimiter": {"s3:ListBucket"},
        "list_with_offset": {"s3:ListBucket"},
        "get": {"s3:GetObject"},
        "get_opts": {"s3:GetObject"},
        "get_range": {"s3:GetObject"},
        "get_ranges": {"s3:GetObject"},
        "head": {"s3:GetObject"},
        "put": {"s3:PutObject"},
        "put_opts": {"s3:PutObject"},
        # CreateMultipartUpload/UploadPart/CompleteMultipartUpload are s3:PutObject;
        # a failed upload is aborted.
        "put_multipart": {"s3:PutObject", "s3:AbortMultipartUpload"},
        "put_multipart_opts": {"s3:PutObject", "s3:AbortMultipartUpload"},
        "delete": {"s3:DeleteObject"},
        "delete_stream": {"s3:DeleteObject"},
        "copy": {"s3:GetObject", "s3:PutObject"},
        "copy_if_not_exists": {"s3:GetObject", "s3:PutObject"},
        "rename": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
        "rename_if_not_exists": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
    }

    def s3_actions_in(self, rel: str, file_only: set[str] = frozenset()) -> set[str]:
        text = self.strip_tests((self.repo / rel).read_text())
        actions = set()
        for m in re.finditer(r"\.store\s*\.\s*([a-z_]+)\(", text):
            method = m.group(1)
            if method in file_only:
                continue
            if method not in self.OBJECT_STORE_ACTIONS:
                self.fail("deploy/iam", f"{rel} calls object_store `{method}`, which this check does not map to IAM actions: map it and update the policies")
                continue
            actions |= self.OBJECT_STORE_ACTIONS[method]
        return actions

    def check_iam(self, stage_configs: dict[str, dict]) -> None:
        idir = self.repo / "deploy/iam"
        policies: dict[str, dict] = {}
        for stage in IAM_STAGES:
            f = idir / f"{stage}.json"
            w = self.rel(f)
            if not self.check(f.is_file(), w, "exists"):
                continue
            try:
                doc = json.loads(f.read_text())
            except json.JSONDecodeError as e:
                self.fail(w, f"not valid JSON: {e}")
                continue
            self.check(doc.get("Version") == "2012-10-17", w, "Version 2012-10-17")
            statements = doc.get("Statement")
            if isinstance(statements, dict):
                statements = [statements]
            if not self.check(isinstance(statements, list) and bool(statements), w, f"{len(statements or [])} statements"):
                continue
            clean = True
            for st in statements:
                sid = st.get("Sid", "?")
                self.check(st.get("Effect") in ("Allow", "Deny"), w, f"{sid}: Effect {st.get('Effect')}")
                if "NotAction" in st or "NotResource" in st:
                    self.fail(w, f"{sid}: NotAction/NotResource grant everything else")
                    clean = False
                actions = st.get("Action", [])
                actions = [actions] if isinstance(actions, str) else actions
                resources = st.get("Resource", [])
                resources = [resources] if isinstance(resources, str) else resources
                if not actions or not resources:
                    self.fail(w, f"{sid}: needs Action and Resource")
                    clean = False
                for a in actions:
                    if "*" in a or ":" not in a:
                        self.fail(w, f"{sid}: action {a!r} is a wildcard; name each call")
                        clean = False
                for r in resources:
                    # A trailing /* below a named resource is a prefix (objects under
                    # the lake prefix, streams of the table); anything else is too wide.
                    head = r[:-2] if r.endswith("/*") else r
                    if r == "*" or "*" in head or not r.startswith("arn:aws:") or head.endswith(":"):
                        self.fail(w, f"{sid}: resource {r!r} is a wildcard or not an ARN")
                        clean = False
            if clean:
                self.ok(w, "no wildcard action or resource")
            policies[stage] = {"statements": statements, "path": w}

        def actions_of(stage: str, pred=lambda r: True) -> set[str]:
            out = set()
            for st in policies.get(stage, {}).get("statements", []):
                res = st.get("Resource", [])
                res = [res] if isinstance(res, str) else res
                if any(pred(r) for r in res):
                    acts = st.get("Action", [])
                    out |= {acts} if isinstance(acts, str) else set(acts)
            return out

        def resources_of(stage: str) -> set[str]:
            out = set()
            for st in policies.get(stage, {}).get("statements", []):
                res = st.get("Resource", [])
                out |= {res} if isinstance(res, str) else set(res)
            return out

        # Source: exactly the DynamoDB calls the connector makes, on the config's tables.
        if "source" in policies:
            w = policies["source"]["path"]
            called = self.dynamodb_actions_in_code()
            granted = actions_of("source")
            self.check(granted == called, w, f"grants exactly the DynamoDB calls connectors/dynamodb makes {sorted(called)}",
                       f"grants {sorted(granted)} but the code calls {sorted(called)}")
            cfg = stage_configs.get("source")
            if self.check(cfg is not None, w, "the Kubernetes source config is known"):
                dyn = cfg["raw"].get("source", {}).get("dynamodb", {})
                table = dyn.get("table")
                lease = dyn.get("lease_table") or f"playlake-source-{table}"
                region = cfg["env"].get("AWS_REGION")
                expected_suffixes = {f"table/{table}", f"table/{table}/stream/*", f"table/{lease}"}
                got = resources_of("source")
                self.check({r.split(":", 5)[-1] for r in got} == expected_suffixes, w,
                           f"resources are the table {table}, its stream and the lease table {lease}",
                           f"resources {sorted(got)} are not exactly table/{table}, its stream and table/{lease}")
                self.check(all(r.split(":")[3] == region for r in got), w, f"resources are in the Deployment's AWS_REGION {region}")
                stream_actions = actions_of("source", lambda r: "/stream/" in r)
                self.check(stream_actions == {a for a in called if a.split(":")[1] in ("DescribeStream", "GetShardIterator", "GetRecords", "ListStreams")},
                           w, f"stream reads on the stream ARN only ({sorted(stream_actions)})")
        # Process and sink: S3 under the lake; checkpoints under their own prefix.
        ckpt_actions = self.s3_actions_in("pipeline/checkpoint/src/store.rs")
        publish_actions = self.s3_actions_in("pipeline/lake/src/store.rs", file_only={"rename"}) | {"s3:AbortMultipartUpload"}
        for stage in ("process", "sink"):
            if stage not in policies:
                continue
            w = policies[stage]["path"]
            cfg = stage_configs.get(stage)
            if not self.check(cfg is not None, w, f"the Kubernetes {stage} config is known"):
                continue
            lake = str(cfg["settings"].get("lake", ""))
            if not self.check(lake.startswith("s3://"), w, f"the {stage} lake is on S3 ({lake})"):
                continue
            bucket, _, prefix = lake[5:].partition("/")
            prefix = prefix.strip("/")
            base = f"{prefix}/" if prefix else ""
            ckpt = f"arn:aws:s3:::{bucket}/{base}_playlake/checkpoints/{stage}/*"
            bucket_arn = f"arn:aws:s3:::{bucket}"
            expected = {ckpt: ckpt_actions - {"s3:ListBucket"}}
            if "s3:ListBucket" in ckpt_actions:
                expected[bucket_arn] = {"s3:ListBucket"}
            if stage == "sink":
                tables = cfg["raw"].get("sink", {}).get("tables", SINK_TABLES_DEFAULT)
                for t in tables:
                    expected[f"arn:aws:s3:::{bucket}/{base}{t}/*"] = publish_actions
            got: dict[str, set[str]] = {}
            for st in policies[stage]["statements"]:
                res = st.get("Resource", [])
                acts = st.get("Action", [])
                for r in ([res] if isinstance(res, str) else res):
                    got.setdefault(r, set()).update([acts] if isinstance(acts, str) else acts)
                if any(r == bucket_arn for r in ([res] if isinstance(res, str) else res)):
                    cond = json.dumps(st.get("Condition", {}))
                    self.check(f"{base}_playlake/checkpoints/{stage}/" in cond, w,
                               f"ListBucket limited to the prefix {base}_playlake/checkpoints/{stage}/",
                               f"ListBucket on {bucket_arn} without an s3:prefix condition on {base}_playlake/checkpoints/{stage}/")
            self.check(got == expected, w, f"grants exactly the S3 calls of the {stage} on its prefixes",
                       f"grants {json.dumps({k: sorted(v) for k, v in sorted(got.items())})}, want {json.dumps({k: sorted(v) for k, v in sorted(expected.items())})}")

    # ---- all ------------------------------------------------------------------------
    def run(self) -> int:
        docker = self.check_dockerfile()
        self.check_compose(docker)
        stage_configs = self.check_kubernetes()
        self.check_iam(stage_configs)
        print(f"\n{self.passes} checks passed, {len(self.failures)} failed")
        if self.failures:
            print("FAILED:")
            for f in self.failures:
                print(f"  - {f}")
            return 1
        return 0


# ---- self-test: each deliberate breakage must be reported -----------------------------
def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise SystemExit(f"self-test: {old!r} not found in {path}; update the self-test")
    path.write_text(text.replace(old, new, 1))


BREAKAGES = [
    ("a mounted file is missing", lambda r: (r / "deploy/compose/sink.toml").unlink(),
     "mounted ./deploy/compose/sink.toml"),
    ("an image uses latest", lambda r: edit(r / "docker-compose.yml", "prom/prometheus:v2.54.1", "prom/prometheus:latest"),
     "uses `latest`"),
    ("depends_on names no service", lambda r: edit(r / "docker-compose.yml", "      topics:\n        condition: service_completed_successfully\n      process:",
                                                    "      topics:\n        condition: service_completed_successfully\n      processor:"),
     "depends_on names 'processor'"),
    ("a scrape target port is wrong", lambda r: edit(r / "deploy/prometheus/prometheus.yml", "sink:9464", "sink:9465"),
     "target sink:9465"),
    ("metrics bind loopback in a container", lambda r: edit(r / "deploy/compose/process.toml", 'metrics_addr = "0.0.0.0:9464"', 'metrics_addr = "127.0.0.1:9464"'),
     "not reachable from other containers"),
    ("a stage config has an unknown key (needs the binary)", lambda r: edit(r / "deploy/compose/sink.toml", "[sink]\n", "[sink]\nflush_every = 3\n"),
     "rejects it"),
    ("a readiness probe path is wrong", lambda r: edit(r / "deploy/kubernetes/process.yaml", "path: /readyz", "path: /ready"),
     "readinessProbe is GET /ready"),
    ("an IAM policy has a wildcard action", lambda r: edit(r / "deploy/iam/process.json", '"s3:DeleteObject"', '"s3:*"'),
     "is a wildcard"),
    ("an IAM policy misses a call the code makes", lambda r: edit(r / "deploy/iam/source.json", '"dynamodb:UpdateItem"\n', '"dynamodb:Query"\n'),
     "but the code calls"),
    ("a COPY source does not exist", lambda r: edit(r / "Dockerfile", "COPY bench bench", "COPY benches benches"),
     "COPY source benches does not exist"),
    ("a compiled-in file is not copied", lambda r: edit(r / "Dockerfile", "COPY deploy/athena deploy/athena\n", ""),
     "deploy/athena/queries"),
    ("a dashboard names a metric no code registers", lambda r: edit(r / "deploy/grafana/dashboards/viewers.json", "playlake_concurrent_viewers", "playlake_concurrent_viewerz"),
     "which no code registers"),
]


def copy_repo(src: Path, dst: Path) -> None:
    """The files the checks read: root build files, deploy/, and the workspace members
    (sources only, no build output)."""
    for name in ("Cargo.toml", "Cargo.lock", "Dockerfile", ".dockerignore", "docker-compose.yml"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    with (src / "Cargo.toml").open("rb") as f:
        members = tomllib.load(f)["workspace"].get("members", [])
    ignore = shutil.ignore_patterns("target", "__pycache__", ".git")
    for d in ["deploy", *members]:
        if (src / d).exists() and not (dst / d).exists():
            shutil.copytree(src / d, dst / d, ignore=ignore, symlinks=True)


def self_test(repo: Path, playlake: Path | None) -> int:
    failures = []
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmp:
        pristine = Path(tmp) / "pristine"
        pristine.mkdir()
        copy_repo(repo, pristine)
        baseline = Checker(pristine, playlake, quiet=True).run_quiet()
        if baseline:
            print("self-test: the unbroken copy already fails:")
            for f in baseline:
                print(f"  - {f}")
            return 1
        skipped = 0
        for i, (what, breakage, expect) in enumerate(BREAKAGES):
            if playlake is None and "needs the binary" in what:
                print(f"SKIP self-test: {what}: no binary (--skip-binary)")
                skipped += 1
                continue
            work = Path(tmp) / f"broken-{i}"
            shutil.copytree(pristine, work, symlinks=True)
            breakage(work)
            found = Checker(work, playlake, quiet=True).run_quiet()
            hit = [f for f in found if expect in f]
            if hit:
                print(f"ok   self-test: {what}: reported ({hit[0].splitlines()[0][:200]})")
            else:
                print(f"FAIL self-test: {what}: not reported (expected {expect!r}; got {found})")
                failures.append(what)
            shutil.rmtree(work)
    tried = len(BREAKAGES) - skipped
    print(f"\nself-test: {tried - len(failures)} of {tried} deliberate breakages reported")
    return 1 if failures else 0


def _run_quiet(self: Checker) -> list[str]:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        self.run()
    return self.failures


Checker.run_quiet = _run_quiet  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--playlake", type=Path, help="the playlake binary that validates the configs")
    parser.add_argument("--skip-binary", action="store_true",
                        help="do not validate configs and command lines with the binary (never under CI)")
    parser.add_argument("--self-test", action="store_true", help="break copies of the files and check every breakage is reported")
    args = parser.parse_args()
    ci = os.environ.get("CI", "").lower() in ("true", "1")
    if args.playlake is None and not args.skip_binary:
        parser.error("give --playlake BIN (or --skip-binary outside CI)")
    if args.skip_binary and ci:
        print("FAIL: --skip-binary under CI: the configs must be validated by the real binary")
        return 1
    if args.playlake is not None and not os.access(args.playlake, os.X_OK):
        print(f"FAIL: {args.playlake} is not an executable playlake binary")
        return 1
    repo = args.repo.resolve()
    playlake = None if args.skip_binary else args.playlake.resolve()
    if args.self_test:
        return self_test(repo, playlake)
    return Checker(repo, playlake).run()


if __name__ == "__main__":
    sys.exit(main())
