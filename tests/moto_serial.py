#!/usr/bin/env python3
"""moto's server, answering one request at a time.

`moto_server` runs Werkzeug with threaded=True, and moto's DynamoDB backend
does not lock: two concurrent conditional UpdateItems on one item can both
pass their condition (seen in CI: two transitions from 100 concurrent
cancels). Real DynamoDB makes each conditional write atomic; serving one
request at a time gives the emulator that same guarantee, so the
concurrency tests test our code and not moto's races.

Usage: moto_serial.py PORT
"""

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

if __name__ == "__main__":
    run_simple(
        "127.0.0.1",
        int(sys.argv[1]),
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
    )
