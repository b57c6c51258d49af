"""Shared by the tests that interrupt a training run: start it, wait for a line of its log on
stderr, send it a signal, and collect what it wrote (the process is killed if it overstays)."""
import subprocess
import threading


def signal_after(cmd, env, cwd, signum, marker="] Iteration 5 ", start_s=180, stop_s=120):
    """Run `cmd`; once its stderr shows `marker`, send `signum`. Returns (return code, stderr
    lines). Fails (AssertionError with the last lines) if the marker never comes; a process still
    running `stop_s` after the signal is killed (return code None)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
    lines, started = [], threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if marker in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = None
    try:
        assert started.wait(start_s), "".join(lines[-20:])
        proc.send_signal(signum)
        code = proc.wait(stop_s)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    return code, lines
