#!/usr/bin/env python3
"""Self-test of the spapr-virtio-vio QEMU device (host/qemu/spapr_virtio_vio.c).

Plays the VIO server side of docs/vio-socket.md against a real QEMU, and
drives the guest side by typing Forth at SLOF's prompt (SLOF has the words
hv-put-tce, hv-reg-crq and hv-send-crq, so no guest image is needed).

Usage: selftest.py [--qemu PATH]
PATH defaults to $VIOBOOT_QEMU, else to the last line printed by build.sh.
Exits 0 and prints "selftest: ok" on success; any failure exits 1.
"""

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))

UNIT = 0x71000010
WINDOW_SIZE = 0x10000000

# frame types (docs/vio-socket.md)
HELLO, GUEST_CRQ, GUEST_EVENT, RESULT, READ_DATA = 0x01, 0x02, 0x03, 0x04, 0x05
SEND_CRQ, RDMA_READ, RDMA_WRITE = 0x10, 0x11, 0x12
EVENT_RESET = 4
MAX_PAYLOAD = 0x100000 + 24

# hcall status values (PAPR)
H_SUCCESS, H_CLOSED = 0, 2
H_FUNCTION, H_PARAMETER, H_DROPPED, H_DEST_PARM = -2, -4, -12, -14

# guest memory layout (IOBAs inside the device's window; 0 is left unused)
IOBA_CRQ, IOBA_RO, IOBA_RW = 0x1000, 0x2000, 0x3000
CRQ_SLOTS = 0x1000 // 16

TIMEOUT = 30.0
PARTNER_FAILED = 0xFF01000000000000


class TestFailure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise TestFailure(what)


def step(msg):
    print(f"selftest: {msg}", flush=True)


class Slof:
    """SLOF on the VM's console (stdin/stdout of QEMU with -nographic)."""

    ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]")

    def __init__(self, proc):
        self.proc = proc
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.eof = False
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        while True:
            data = self.proc.stdout.read1(4096)
            with self.cond:
                if not data:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.buf += data
                self.cond.notify_all()

    def _wait_for(self, start, pattern, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                text = self.ANSI.sub(b"", bytes(self.buf[start:]))
                m = pattern.search(text)
                if m:
                    return text, m
                if self.eof:
                    raise TestFailure("QEMU's console closed (did QEMU exit?)")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure(f"timeout waiting for {pattern.pattern!r}; "
                                      f"console tail: {text[-300:]!r}")
                self.cond.wait(left)

    def wait_prompt(self, timeout=90.0):
        self._wait_for(0, re.compile(rb"\n0 > "), timeout)

    def run(self, cmd):
        """Types CMD (which must leave the stack as it found it) and returns
        the numbers it printed with `.`, as Python ints."""
        with self.cond:
            start = len(self.buf)
        line = f'." <R>" {cmd} ." </R>"'
        check(len(line) < 200, "Forth line too long")
        self.proc.stdin.write(line.encode() + b"\r")
        self.proc.stdin.flush()
        text, m = self._wait_for(start, re.compile(rb"<R>([^\"<]*)</R>\s*ok"), TIMEOUT)
        return [int(tok, 16) for tok in m.group(1).decode().split()]


class Server:
    """The VIO server end of the socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.pending = []
        self.tag = 100

    def close(self):
        self.sock.close()

    def _recv_exact(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return bytes(out)

    def recv_frame(self):
        typ, length = struct.unpack("<II", self._recv_exact(8))
        check(length <= MAX_PAYLOAD, f"frame of {length} bytes from QEMU")
        return typ, self._recv_exact(length)

    def expect(self, typ):
        for i, (t, p) in enumerate(self.pending):
            if t == typ:
                del self.pending[i]
                return p
        while True:
            t, p = self.recv_frame()
            if t == typ:
                return p
            self.pending.append((t, p))

    def send(self, typ, payload):
        self.sock.sendall(struct.pack("<II", typ, len(payload)) + payload)

    def next_tag(self):
        self.tag += 1
        return self.tag

    def _result(self, tag):
        p = self.expect(RESULT)
        check(len(p) == 16, f"RESULT of {len(p)} bytes")
        rtag, status = struct.unpack("<Qq", p)
        check(rtag == tag, f"RESULT tag {rtag:#x}, expected {tag:#x}")
        return status

    def send_crq(self, entry):
        tag = self.next_tag()
        self.send(SEND_CRQ, struct.pack("<Q", tag) + entry)
        return self._result(tag)

    def rdma_read(self, ioba, length):
        tag = self.next_tag()
        self.send(RDMA_READ, struct.pack("<QQII", tag, ioba, length, 0))
        p = self.expect(READ_DATA)
        rtag, status = struct.unpack("<Qq", p[:16])
        check(rtag == tag, f"READ_DATA tag {rtag:#x}, expected {tag:#x}")
        data = p[16:]
        check(len(data) == (length if status == 0 else 0),
              f"READ_DATA with {len(data)} bytes for len {length}, status {status}")
        return status, data

    def rdma_write(self, ioba, data):
        tag = self.next_tag()
        self.send(RDMA_WRITE, struct.pack("<QQII", tag, ioba, len(data), 0) + data)
        return self._result(tag)

    def hello(self):
        p = self.expect(HELLO)
        check(len(p) >= 32, f"HELLO of {len(p)} bytes")
        return struct.unpack("<IIIIQQ", p[:32])


def crq(word0, word1):
    return struct.pack(">QQ", word0, word1)


def wait_guest_word(slof, cmd, value, what):
    deadline = time.monotonic() + TIMEOUT
    while True:
        r = slof.run(cmd)
        if r == [value]:
            return
        check(time.monotonic() < deadline, f"{what}: guest reads {r}")
        time.sleep(0.2)


def find_qemu(arg):
    if arg:
        return arg
    if os.environ.get("VIOBOOT_QEMU"):
        return os.environ["VIOBOOT_QEMU"]
    out = subprocess.run([os.path.join(HERE, "build.sh")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def check_dtb(qemu, tmp):
    dtb = os.path.join(tmp, "v.dtb")
    r = subprocess.run([qemu, "-L", "/usr/share/qemu", "-M", f"pseries,dumpdtb={dtb}",
                        "-nographic", "-vga", "none", "-nic", "none",
                        "-chardev", f"socket,id=v0,path={tmp}/dtb.sock,server=on,wait=off",
                        "-device", f"spapr-virtio-vio,chardev=v0,reg={UNIT:#x}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    check(r.returncode == 0, f"QEMU could not dump the device tree:\n{r.stderr}")
    dts = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", dtb], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True).stdout
    m = re.search(r"\n(\t+)virtio@71000010 \{\n(.*?)\n\1\};", dts, re.S)
    check(m, "no /vdevice/virtio@71000010 node in the dumped tree")
    node = m.group(2)
    for prop in ('device_type = "virtio-vio";',
                 'compatible = "IBM,virtio-vio";',
                 "reg = <0x71000010>;",
                 "ibm,my-dma-window = <0x71000010 0x00 0x00 0x00 0x10000000>;",
                 "ibm,#dma-address-cells = <0x02>;",
                 "ibm,#dma-size-cells = <0x02>;",
                 "interrupts = <"):
        check(prop in node, f"device tree node lacks {prop!r}:\n{node}")
    step("device tree node ok")


def qmp(path, *commands):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    f = s.makefile("rwb")
    json.loads(f.readline())                      # greeting
    replies = []
    for cmd in ("qmp_capabilities",) + commands:
        f.write(json.dumps({"execute": cmd}).encode() + b"\n")
        f.flush()
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                break
        check("return" in msg, f"QMP {cmd}: {msg}")
        replies.append(msg["return"])
    s.close()
    return replies[1:]


def run(qemu, tmp):
    check_dtb(qemu, tmp)

    vsock = os.path.join(tmp, "v.sock")
    qsock = os.path.join(tmp, "qmp.sock")
    errlog = open(os.path.join(tmp, "qemu.err"), "w+")
    proc = subprocess.Popen(
        [qemu, "-L", "/usr/share/qemu", "-M", "pseries", "-m", "1G",
         "-nographic", "-vga", "none", "-nic", "none",
         "-prom-env", "auto-boot?=false",
         "-qmp", f"unix:{qsock},server=on,wait=off",
         "-chardev", f"socket,id=v0,path={vsock},server=on,wait=off",
         "-device", f"spapr-virtio-vio,chardev=v0,reg={UNIT:#x}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog)
    try:
        slof = Slof(proc)
        slof.wait_prompt()
        step("SLOF prompt reached")

        # Guest memory: 4 pages; CRQ, a page the device may only read, a page
        # it may read and write, and an unmapped scratch page.
        slof.run("4000 1000 claim value q  q 4000 erase")
        slof.run("q 3000 + value m")

        # No server yet: the guest's H_SEND_CRQ fails with H_CLOSED.
        r = slof.run(f"c001000000000000 m x! 0 m 8 + x! {UNIT:x} m hv-send-crq .")
        check(r == [H_CLOSED], f"H_SEND_CRQ without a server gave {r}")
        step("H_SEND_CRQ with no server connected -> H_CLOSED")

        srv = Server(vsock)
        version, unit, liobn, flags, ioba, size = srv.hello()
        check((version, unit, liobn, flags, ioba, size) ==
              (1, UNIT, UNIT, 0, 0, WINDOW_SIZE),
              f"HELLO {(version, hex(unit), hex(liobn), flags, ioba, hex(size))}")
        step("HELLO ok")

        st, _ = srv.rdma_read(IOBA_RW, 16)
        check(st == H_DEST_PARM, f"RDMA_READ of an unmapped IOBA gave {st}")
        st, _ = srv.rdma_read(WINDOW_SIZE + 0x1000, 16)
        check(st != 0, f"RDMA_READ outside the window gave {st}")
        st = srv.rdma_write(IOBA_RW, b"x" * 16)
        check(st == H_DEST_PARM, f"RDMA_WRITE of an unmapped IOBA gave {st}")
        st, _ = srv.rdma_read(IOBA_RW, 0x100001)
        check(st == H_PARAMETER, f"RDMA_READ above the maximum gave {st}")
        step("RDMA to unmapped IOBAs refused")

        st = srv.send_crq(crq(0xC001000000000000, 0))
        check(st == H_CLOSED, f"SEND_CRQ with no guest CRQ gave {st}")
        step("SEND_CRQ with no guest CRQ -> H_CLOSED")

        tag = srv.next_tag()
        srv.send(0x7F, struct.pack("<Q", tag) + b"abc")
        check(srv._result(tag) == H_FUNCTION, "unknown frame type not answered H_FUNCTION")

        # Guest maps its pages and registers its CRQ.
        r = slof.run(f"{UNIT:x} {IOBA_CRQ:x} q 3 or hv-put-tce . "
                     f"{UNIT:x} {IOBA_RO:x} q 1000 + 1 or hv-put-tce . "
                     f"{UNIT:x} {IOBA_RW:x} q 2000 + 3 or hv-put-tce .")
        check(r == [0, 0, 0], f"H_PUT_TCE gave {r}")
        slof.run("1122334455667788 q 1000 + x! 99aabbccddeeff00 q 1008 + x!")
        r = slof.run(f"{UNIT:x} {IOBA_CRQ:x} 1000 hv-reg-crq .")
        check(r == [0], f"H_REG_CRQ gave {r}")

        # guest -> server
        r = slof.run(f"c001000000000000 m x! 0123456789abcdef m 8 + x! {UNIT:x} m hv-send-crq .")
        check(r == [H_SUCCESS], f"H_SEND_CRQ gave {r}")
        p = srv.expect(GUEST_CRQ)
        check(p == crq(0xC001000000000000, 0x0123456789ABCDEF), f"GUEST_CRQ {p.hex()}")
        step("guest CRQ entry forwarded byte-exact")

        # server -> guest
        st = srv.send_crq(crq(0xC002000000000000, 0x1111222233334444))
        check(st == H_SUCCESS, f"SEND_CRQ gave {st}")
        r = slof.run("q x@ u. q 8 + x@ u.")
        check(r == [0xC002000000000000, 0x1111222233334444], f"guest CRQ slot 0 holds {r}")
        st = srv.send_crq(crq(0x0002000000000000, 0))
        check(st == H_PARAMETER, f"SEND_CRQ without the valid bit gave {st}")
        step("SEND_CRQ delivered into the guest's CRQ")

        # remote DMA through the TCE window, permission-checked
        st, data = srv.rdma_read(IOBA_RO, 16)
        check(st == 0 and data == bytes.fromhex("112233445566778899aabbccddeeff00"),
              f"RDMA_READ of the read-only page gave {st} {data.hex()}")
        st = srv.rdma_write(IOBA_RO, b"\0" * 8)
        check(st == H_DEST_PARM, f"RDMA_WRITE of a read-only page gave {st}")
        st = srv.rdma_write(IOBA_RW + 8, bytes.fromhex("0807060504030201"))
        check(st == 0, f"RDMA_WRITE gave {st}")
        r = slof.run("q 2008 + x@ u.")
        check(r == [0x0807060504030201], f"guest sees {r} after RDMA_WRITE")
        big = bytes(range(256)) * 16
        check(srv.rdma_write(IOBA_RW, big) == 0, "4 KiB RDMA_WRITE failed")
        st, data = srv.rdma_read(IOBA_RW, 4096)
        check(st == 0 and data == big, "4 KiB RDMA_READ returned other data")
        st, _ = srv.rdma_read(IOBA_RW, 4097)
        check(st == H_DEST_PARM, f"RDMA_READ past the mapped page gave {st}")
        st, _ = srv.rdma_read(IOBA_RW, 0x100000)
        check(st == H_DEST_PARM, f"1 MiB RDMA_READ past the mapped page gave {st}")
        st = srv.rdma_write(IOBA_RW + 0x1000, bytes(0x100000))
        check(st == H_DEST_PARM, f"1 MiB RDMA_WRITE to unmapped pages gave {st}")
        # a refused RDMA_WRITE writes nothing, not even the permitted page
        st = srv.rdma_write(IOBA_RW, b"\xab" * 0x2000)
        check(st == H_DEST_PARM, f"RDMA_WRITE over RW + unmapped pages gave {st}")
        st, data = srv.rdma_read(IOBA_RW, 4096)
        check(st == 0 and data == big, "a refused RDMA_WRITE changed guest memory")
        st = srv.rdma_write(IOBA_RO - 8, b"\xab" * 16)
        check(st == H_DEST_PARM, f"RDMA_WRITE over CRQ + read-only pages gave {st}")
        r = slof.run("q ff8 + x@ u.")
        check(r == [0], f"a refused RDMA_WRITE changed the CRQ page: {r}")
        # zero-length transfers always succeed
        check(srv.rdma_read(0x7000, 0) == (0, b""), "empty RDMA_READ failed")
        check(srv.rdma_write(0x7000, b"") == 0, "empty RDMA_WRITE failed")
        step("RDMA_READ/RDMA_WRITE honour the TCE permissions")

        # queue full: slot 0 is still valid; fill the other 255 slots
        for i in range(CRQ_SLOTS - 1):
            st = srv.send_crq(crq(0x8000000000000000 | i, i))
            check(st == H_SUCCESS, f"SEND_CRQ #{i} gave {st}")
        st = srv.send_crq(crq(0x8000000000000000, 0))
        check(st == H_DROPPED, f"SEND_CRQ into a full CRQ gave {st}")
        slof.run("q 1000 erase")            # the guest consumes everything
        step("full CRQ -> H_DROPPED")

        # protocol error: a malformed request drops the connection ...
        srv.send(SEND_CRQ, b"")                 # too short: protocol error
        try:
            while True:
                srv.recv_frame()
        except EOFError:
            pass
        srv.close()
        # ... and the guest is told its partner failed
        wait_guest_word(slof, "q x@ u.", PARTNER_FAILED, "partner-failed event")
        step("protocol error drops the connection; guest gets partner-failed")

        srv = Server(vsock)
        version, unit, _, flags, _, _ = srv.hello()
        check(version == 1 and unit == UNIT and flags == 1,
              f"HELLO after the drop: flags {flags} (guest CRQ is registered)")
        srv.sock.sendall(struct.pack("<II", RDMA_WRITE, MAX_PAYLOAD + 1))
        try:
            while True:
                srv.recv_frame()
        except EOFError:
            pass
        srv.close()
        wait_guest_word(slof, "q 10 + x@ u.", PARTNER_FAILED, "second partner-failed event")
        step("oversized frame drops the connection")

        # clean disconnect and reconnect
        srv = Server(vsock)
        srv.hello()
        r = slof.run(f"8000000000000042 m x! 0 m 8 + x! {UNIT:x} m hv-send-crq .")
        check(r == [H_SUCCESS], f"H_SEND_CRQ gave {r}")
        check(srv.expect(GUEST_CRQ) == crq(0x8000000000000042, 0), "GUEST_CRQ mismatch")
        srv.close()
        deadline = time.monotonic() + TIMEOUT
        while True:
            r = slof.run(f"8000000000000043 m x! 0 m 8 + x! {UNIT:x} m hv-send-crq .")
            if r == [H_CLOSED]:
                break
            check(r == [H_SUCCESS] and time.monotonic() < deadline,
                  f"H_SEND_CRQ after disconnect gave {r}")
            time.sleep(0.2)
        r = slof.run("q 20 + x@ u.")
        check(r == [PARTNER_FAILED], f"third CRQ slot holds {r}, not partner-failed")
        srv = Server(vsock)
        version, unit, _, _, _, _ = srv.hello()
        check(version == 1 and unit == UNIT, "HELLO after reconnect")
        step("disconnect + reconnect -> HELLO again")

        # machine reset is reported
        qmp(qsock, "system_reset")
        p = srv.expect(GUEST_EVENT)
        check(struct.unpack("<I", p) == (EVENT_RESET,), f"GUEST_EVENT {p.hex()}")
        st = srv.send_crq(crq(0xC001000000000000, 0))
        check(st == H_CLOSED, f"SEND_CRQ after reset gave {st}")
        step("system_reset -> GUEST_EVENT reset, CRQ gone")

        (status,) = qmp(qsock, "query-status")
        check(status.get("status") == "running", f"QEMU status {status}")
        srv.close()
        qmp(qsock, "quit")
        rc = proc.wait(timeout=TIMEOUT)
        check(rc == 0, f"QEMU exited with {rc}")
        errlog.seek(0)
        err = errlog.read()
        check("uninitialized queue" not in err, f"QEMU complained: {err}")
        check(err.count("protocol error") == 2,
              f"expected two protocol-error warnings on QEMU's stderr:\n{err}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errlog.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qemu", help="qemu-system-ppc64 with spapr-virtio-vio")
    args = ap.parse_args()
    qemu = find_qemu(args.qemu)
    with tempfile.TemporaryDirectory(prefix="vioboot-qemu-selftest-") as tmp:
        try:
            run(qemu, tmp)
        except (TestFailure, OSError, EOFError, subprocess.SubprocessError) as e:
            print(f"selftest: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            errf = os.path.join(tmp, "qemu.err")
            if os.path.exists(errf):
                sys.stderr.write("--- QEMU stderr ---\n" + open(errf).read())
            return 1
    print("selftest: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
