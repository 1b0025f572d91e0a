"""moto's server, one request at a time.

moto's DynamoDB is not safe under concurrent requests: `TransactWriteItems` checks each
condition and applies each write in turn, and a cancelled transaction restores a copy of the
whole table taken when it began, so two racing transactions can both pass a condition that
only one should, or one can undo the other's committed writes. Real DynamoDB serialises
transactions on the same item. This wrapper serialises every request behind one lock, so
tests that race many writers (the room cap) see a linearizable store, as in production.

Usage: python moto_server.py -H 127.0.0.1 -p PORT   (the same arguments as moto.server)
"""

import threading

from moto import server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_lock = threading.Lock()
_call = DomainDispatcherApplication.__call__


def _serial(self, environ, start_response):
    with _lock:
        # Drain the body inside the lock: a WSGI app may produce it lazily.
        return list(_call(self, environ, start_response))


DomainDispatcherApplication.__call__ = _serial

if __name__ == "__main__":
    server.main()
