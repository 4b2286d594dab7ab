"""A real SMTP server for the tests (aiosmtpd): every message received is saved as an .eml file,
with the envelope's recipients in an X-Envelope-To header.

    python3 smtp_sink.py <port> <directory>
"""
import os
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(self.directory, f"{time.time_ns()}-{self.count}.eml")
        header = f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        with open(path + ".part", "wb") as f:
            f.write(header + envelope.original_content)
        os.rename(path + ".part", path)
        return "250 Message accepted"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
