"""UForge's own Python SDK (uforge_python_sdk 3.8.13, Python 2.7) against
this service, driven by tests/suite/uforge_sdk.rs. Each command prints JSON
lines on stdout:

  poll BASE LOGIN PASSWORD UID AID ITID PITID INTERVAL MAX
      hammr 3.8.13's publish loop (hammr/utils/publish_utils.py,
      print_publish_status): Status.Get() until complete, error or
      cancelled, sleeping INTERVAL seconds between polls. One line per
      status read, then {"end": "canceled" | "error" | "ok", "message"}.
      Gives up (exit 3) after MAX polls.
  status BASE LOGIN PASSWORD UID AID ITID PITID
  cancel BASE LOGIN PASSWORD UID AID ITID PITID
      One Status.Get() or Cancel.Cancel(): the parsed status, or the
      parsed uforgeError the SDK raised ({"error": statusCode, ...}).
  status-apikey BASE PUBLIC SECRET UID AID ITID PITID
      Status.Get() signed with an API key pair (the SDK's own signer).
"""

import json
import sys
import time

from uforge.application import Api


def publish(api, uid, aid, itid, pitid):
    return api.Users(uid).Appliances(int(aid)).Images(int(itid)).Pimages(int(pitid))


def fields(status):
    return {
        "cancelled": bool(status.cancelled),
        "complete": bool(status.complete),
        "error": bool(status.error),
        "percentage": status.percentage,
        "message": status.message,
        "uri": status.uri,
        "type": type(status).__name__,
    }


def out(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def guarded(call):
    """The call's status, or the uforgeError the SDK raised as an
    exception (its argument is the parsed error document)."""
    try:
        return fields(call())
    except Exception as e:
        error = e.args[0] if e.args else None
        if hasattr(error, "statusCode"):
            return {
                "error": error.statusCode,
                "messageId": error.localizedErrorMsg.messageId,
                "requestMethod": error.requestMethod,
                "requestUri": error.requestUri,
            }
        return {"exception": repr(e)}


def poll(api, key, interval, most):
    status = publish(api, *key).Status.Get()
    polls = 1
    while not (status.complete or status.error or status.cancelled):
        out(fields(status))
        if polls >= most:
            sys.exit(3)
        status = publish(api, *key).Status.Get()
        polls += 1
        time.sleep(interval)
    out(fields(status))
    # hammr prints "canceled: " + status.message here (its 3.8.13 then
    # trips over a typo, `status.message.printer.WARNING`, after the loop).
    end = "error" if status.error else "canceled" if status.cancelled else "ok"
    out({"end": end, "message": status.message})


def main(argv):
    command, base = argv[1], argv[2]
    if command == "status-apikey":
        api = Api(base, None, None, apikeys={"publickey": argv[3], "secretkey": argv[4]})
    else:
        api = Api(base, argv[3], argv[4])
    key = argv[5:9]
    if command == "poll":
        poll(api, key, float(argv[9]), int(argv[10]))
    elif command in ("status", "status-apikey"):
        out(guarded(lambda: publish(api, *key).Status.Get()))
    elif command == "cancel":
        out(guarded(lambda: publish(api, *key).Cancel.Cancel()))
    else:
        sys.exit("unknown command " + command)


if __name__ == "__main__":
    main(sys.argv)
