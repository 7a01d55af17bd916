#!/usr/bin/env python3
"""Drives chatapp's client in a pseudo-terminal, as a person would, for the
packaging smoke tests: trust the new server, create an account from the
start menu (or, with --login, log in to it on a server already trusted),
see the main menu, log out, quit; then, if the program waits
for Enter before closing (the double-click pause), press it.

Usage: pty_client.py [--login | --fail-with TEXT] --name NAME --pause yes|no|any [--log FILE] -- COMMAND...

--pause says whether the "Press Enter to close this window." prompt must
appear (yes), must not (no), or may (any). Exits 0 when every step was seen
and the program ended with status 0 (1 with --fail-with, which expects
only that error message); otherwise says which step failed, with
the screen text seen so far.

Only the standard library: the output is matched with escape sequences
and all white space removed, since a console emulator (wine's) may move the
cursor instead of writing spaces.
"""

import argparse
import os
import pty
import re
import select
import signal
import struct
import sys
import termios
import fcntl
import time

PASSWORD = "violet tractor anthem 1987"
STEP_TIMEOUT = float(os.environ.get("PTY_STEP_TIMEOUT", "60"))
PAUSE_PROMPT = "Press Enter to close this window."

ESCAPES = re.compile(rb"\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78cDEHM]")


def squeeze(text):
    return re.sub(r"\s+", "", text)


class Session:
    def __init__(self, argv, log):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.raw = b""
        self.pos = 0  # squeezed text already matched
        self.log = log
        self.status = None

    def text(self):
        return ESCAPES.sub(b"", self.raw).decode("utf-8", "replace")

    def read_some(self, wait):
        ready, _, _ = select.select([self.fd], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            return False
        self.raw += data
        if self.log:
            self.log.write(data)
            self.log.flush()
        return True

    def expect(self, needle, what=None):
        want = squeeze(needle)
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            seen = squeeze(self.text())
            at = seen.find(want, self.pos)
            if at >= 0:
                self.pos = at + len(want)
                print(f"  seen: {needle}", flush=True)
                return
            if time.monotonic() > deadline or not self.read_some(0.2):
                if time.monotonic() <= deadline:
                    # The program ended: one last look at what it wrote.
                    seen = squeeze(self.text())
                    if seen.find(want, self.pos) >= 0:
                        continue
                self.fail(f"did not see {what or repr(needle)}")

    def seen_later(self, needle):
        return squeeze(needle) in squeeze(self.text())[self.pos :]

    def send(self, keys):
        time.sleep(0.3)  # let the prompt finish drawing and read input
        os.write(self.fd, keys.encode())

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_some(0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        return None

    def fail(self, why):
        print(f"pty_client.py: FAILED: {why}", file=sys.stderr)
        print("---- screen text so far ----", file=sys.stderr)
        print(self.text()[-4000:], file=sys.stderr)
        print("----", file=sys.stderr)
        self.kill()
        sys.exit(1)

    def kill(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--login", action="store_true", help="log in to an existing account on a known server")
    parser.add_argument("--fail-with", metavar="TEXT", help="expect only this error message and exit status 1")
    parser.add_argument("--pause", choices=["yes", "no", "any"], default="any")
    parser.add_argument("--log")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    log = open(args.log, "wb") if args.log else None

    s = Session(args.command, log)
    down = "\x1b[B"
    if args.fail_with:
        s.expect(args.fail_with)
    elif args.login:
        # A known server: straight to the start menu, then "Log in".
        s.expect("What would you like to do?")
        s.send("\r")
        s.expect("User name")
        s.send(args.name + "\r")
        s.expect("Password (hidden):")
        s.send(PASSWORD + "\r")
        s.expect(f"Welcome back, {args.name}.")
    else:
        s.expect("is a server you have not met before")
        s.expect("Trust this server?")
        s.send("y")
        s.expect("Connected to")
        s.expect("What would you like to do?")
        s.send(down)
        s.send("\r")
        s.expect("Leave the name empty to go back.")
        s.expect("User name")
        s.send(args.name + "\r")
        s.expect("Password (hidden):")
        s.send(PASSWORD + "\r")
        s.expect("Password again (hidden):")
        s.send(PASSWORD + "\r")
        s.expect(f"Welcome, {args.name}: your account is ready.")
    if not args.fail_with:
        log_out_and_quit(s, args.name)
    end(s, args)


def log_out_and_quit(s, name):
    down = "\x1b[B"
    s.expect("Main menu")
    s.expect(f"logged in as {name}")
    s.expect("Log out / quit")
    s.send("5\r")
    s.expect(f"{name} logged out.")
    s.expect("What would you like to do?")
    s.send(down)
    s.send(down)
    s.send("\r")
    s.expect("Bye.")


def end(s, args):
    want = 1 if args.fail_with else 0
    paused = False
    if args.pause == "yes":
        s.expect(PAUSE_PROMPT, "the double-click pause")
        paused = True
    else:
        # Give a pause prompt time to show, or the program time to end.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and s.status is None:
            if s.seen_later(PAUSE_PROMPT):
                paused = True
                break
            if s.wait_exit(0.5) is not None:
                break
        paused = paused or s.seen_later(PAUSE_PROMPT)
        if paused and args.pause == "no":
            s.fail("it waited for Enter although it should not")
    if paused:
        if s.wait_exit(2) is not None:
            s.fail("it showed the pause prompt but ended without waiting for Enter")
        print("  still waiting: pressing Enter", flush=True)
        s.send("\r")
    code = s.status if s.status is not None else s.wait_exit(STEP_TIMEOUT)
    if code is None:
        s.fail("it did not end")
    if code != want:
        s.fail(f"it ended with status {code}, not {want}")
    print(f"  ended with status {code} ({'after' if paused else 'without'} the pause)", flush=True)


if __name__ == "__main__":
    main()
