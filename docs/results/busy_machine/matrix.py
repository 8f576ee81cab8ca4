"""Seconds per training iteration of the demo recipe, by torch threads x OpenMP wait policy x
CPU-burning neighbours. Usage: python matrix.py OUT.jsonl CASE [CASE ...], CASE = threads:policy:burners
(policy: default | passive | spin0 | active). Each case: start the burners, train 12 iterations
(log every 4), stop the burners; s/it = median of the windows after the first."""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

PY = os.environ.get("GSAG_PY", ".venv/bin/python")
ENVS = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "active": {"OMP_WAIT_POLICY": "ACTIVE"},
        "spin0": {"GOMP_SPINCOUNT": "0"}}

def run_case(threads, policy, burners, data_root):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(ENVS[policy])
    alone = os.environ.get("BURNER_SESSIONS") == "1"  # each burner in a session of its own
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=alone)
             for _ in range(burners)]
    tmp = tempfile.mkdtemp(prefix="busy_")
    try:
        time.sleep(2)
        load0 = os.getloadavg()[0]
        t0 = time.time()
        cmd = [PY, "-m", "gsag", "train", "configs/demo.yaml", "--out", f"{tmp}/run", "--quiet",
               "--threads", str(threads), "--set", f"data.root={data_root}", "train.iters=12",
               "train.log_interval=4", "train.eval_interval=1000", "train.save_interval=1000", "eval.max_images=8"]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.time() - t0
        rows = [json.loads(l) for l in open(f"{tmp}/run/metrics.jsonl") if '"train"' in l] if r.returncode == 0 else []
        spi = [row["sec_per_iter"] for row in rows]
        return dict(threads=threads, policy=policy, burners=burners, burner_sessions=alone, sec_per_iter_windows=spi,
                    sec_per_iter=statistics.median(spi[1:]) if len(spi) > 1 else None, wall_s=round(wall, 1),
                    load_at_start=load0, load_at_end=os.getloadavg()[0], rc=r.returncode,
                    err=r.stderr[-300:] if r.returncode else "")
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    out = sys.argv[1]
    for case in sys.argv[2:]:
        t, pol, b = case.split(":")
        res = run_case(int(t), pol, int(b), os.environ.get("DATA_ROOT", "runs/demo_data"))
        res["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        print(json.dumps(res), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(res) + "\n")
