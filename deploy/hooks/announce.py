#!/usr/bin/python3
"""Example lifecycle hook (exec): reads the event on stdin, decides by its exit status.

Policy:  hooks: [{name: announce, event: launching, timeout: 30s,
                  exec: [/etc/autoscaler/hooks/announce.py]}]
Exit 0 continues, exit 1 abandons (a launching member is then destroyed and replaced); any other
status, or no answer within the timeout, applies the hook's default_result. The same fields are
in the environment as AUTOSCALER_EVENT, AUTOSCALER_INSTANCE_ID, AUTOSCALER_ADDRESS, ...
"""

import json
import sys
import urllib.request

event = json.load(sys.stdin)
if event["event"] == "launching":
    # e.g. refuse a member whose service does not know its own name yet
    url = f"http://{event['address']}:{event['port']}/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            sys.exit(0 if reply.status == 200 else 1)
    except OSError:
        sys.exit(1)
sys.exit(0)
