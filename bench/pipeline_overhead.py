"""Pipeline overhead on an MLflow registry with webhooks: the time from a model version's
registration to its purified version's registration, minus the job's own purification and
evaluation time (report.json timings.total_seconds). Both ends are the registry's own
creation timestamps (server clock), so polling in this script adds no error.

Run with the Python of scripts/test-server.sh mlflow (MLflow 3.17.2):
  python bench/pipeline_overhead.py --fstgate target/release/fstgate [--versions 10]
Starts an MLflow server and `fstgate watch` on 127.0.0.1 (free ports) in a temporary directory,
trains a small backdoored Fashion-MNIST CNN with the lab, registers it --versions times, one
after the other, and prints a markdown table with the median.
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.request

import mlflow
from mlflow import MlflowClient

FASHION = "/usr/share/datasets/fashion-mnist"
SECRET = "bench-webhook-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=90):
    start = time.time()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() - start > timeout:
            sys.exit(f"{url} did not answer")
        time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fstgate", required=True)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    fstgate = os.path.abspath(args.fstgate)
    work = tempfile.mkdtemp(prefix="fstgate-overhead-")
    procs = []
    try:
        run = lambda *a: subprocess.run([fstgate, "--quiet", *a], check=True, cwd=work)
        run("lab", "poison", "--data", f"{FASHION}#train", "--train-count", "6000", "--test-data",
            f"{FASHION}#test", "--test-count", "1000", "--epochs", "3", "--rate", "0.05", "--out", "backdoored.pt")
        run("keygen", "--private-key", "signing.pem", "--public-key", "signing.pub")
        mport, wport = free_port(), free_port()
        env = dict(os.environ, MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https", MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
                   MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_WEBHOOK_CACHE_TTL="1")
        log = open(os.path.join(work, "mlflow.log"), "w")
        procs.append(subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--host",
                                       "127.0.0.1", "--port", str(mport), "--workers", "1", "--backend-store-uri",
                                       f"sqlite:///{work}/mlflow.db", "--artifacts-destination", f"{work}/artifacts"],
                                      env=env, stdout=log, stderr=log))
        server = f"http://127.0.0.1:{mport}"
        wait_http(f"{server}/health")
        with open(os.path.join(work, "fstgate.toml"), "w") as f:
            f.write(f"""state_dir = "state"
device = "cpu"
poll_interval_seconds = 3600
listen = "127.0.0.1:{wport}"

[[sources]]
name = "registry"
kind = "mlflow"
url = "{server}"
webhook_secret_env = "FSTGATE_BENCH_WEBHOOK_SECRET"

[destination]
url = "released"

[[data]]
models = "*/*"
clean = "{FASHION}#train"
clean_count = 500
test = "{FASHION}#test"
test_count = 1000
trigger = "badnets"
target_class = 0

[purification.settings]
method = "fst"
epochs = 1
learning_rate = 0.01
momentum = 0.9
weight_decay = 0.0
batch_size = 128
alpha = 0.2
augmentation = {{ crop_padding = 0, horizontal_flip = false }}
seed = 0

[[policies]]
plugin = "builtin:thresholds"
config = {{ max_attack_success_rate = 1.0, max_accuracy_drop_points = 100.0 }}

[signing_key]
path = "signing.pem"
""")
        wlog = open(os.path.join(work, "watch.log"), "w")
        procs.append(subprocess.Popen([fstgate, "watch", "--config", "fstgate.toml"], cwd=work, stderr=wlog,
                                      stdout=subprocess.DEVNULL, env=dict(os.environ, FSTGATE_BENCH_WEBHOOK_SECRET=SECRET)))
        wait_http(f"http://127.0.0.1:{wport}/healthz")
        mlflow.set_tracking_uri(server)
        client = MlflowClient()
        client.create_webhook(name="fstgate", url=f"http://127.0.0.1:{wport}/webhooks/registry",
                              events=["model_version.created"], secret=SECRET)
        model_dir = os.path.join(work, "model")
        os.makedirs(os.path.join(model_dir, "data"))
        shutil.copy(os.path.join(work, "backdoored.pt"), os.path.join(model_dir, "data", "model.pth"))
        with open(os.path.join(model_dir, "MLmodel"), "w") as f:
            f.write("flavors:\n  pytorch:\n    model_data: data\n    pytorch_version: 2.11.0\n")
        rows = []
        for i in range(args.versions):
            with mlflow.start_run() as r:
                mlflow.log_artifacts(model_dir, "model")
            mv = mlflow.register_model(f"runs:/{r.info.run_id}/model", "bench-cnn")
            start = time.time()
            while True:
                found = [v for v in client.search_model_versions("name = 'bench-cnn-purified'")
                         if v.tags.get("fstgate.purified_from") == f"bench-cnn/{mv.version}"]
                if found:
                    break
                if time.time() - start > 300:
                    sys.exit(f"bench-cnn/{mv.version} was not purified within 300 s; see {work}/watch.log")
                time.sleep(0.05)
            purified = found[0]
            report_dir = mlflow.artifacts.download_artifacts(run_id=purified.run_id, artifact_path="fstgate/report.json",
                                                             dst_path=os.path.join(work, f"report-{i}"))
            timings = json.load(open(report_dir))["timings"]
            total = (purified.creation_timestamp - mv.creation_timestamp) / 1000
            rows.append((mv.version, total, timings["total_seconds"], total - timings["total_seconds"]))
        print("| version | registration to purified version (s) | purification + evaluation (s) | overhead (s) |")
        print("|---|---|---|---|")
        for version, total, job, overhead in rows:
            print(f"| {version} | {total:.3f} | {job:.3f} | {overhead:.3f} |")
        print(f"| median | {statistics.median(r[1] for r in rows):.3f} | {statistics.median(r[2] for r in rows):.3f} "
              f"| {statistics.median(r[3] for r in rows):.3f} |")
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait()
        if args.keep:
            print(f"work directory: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
