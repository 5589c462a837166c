"""gunicorn's gevent worker, with a deadline on each request and a fair share for each
connection.

Deadline. gunicorn's gevent worker already bounds what comes before a request: the request line
and the headers must arrive within ``keepalive`` seconds, and so must the next request on a
kept-alive connection, or the connection is closed. What comes after is not bounded: a client
that sends its body slowly, or not at all, or does not read the answer, holds its connection
forever. This worker gives each request ``timeout`` seconds from its headers to the last byte of
its answer. A request whose body is late gets ``408 {"error": "request timeout: ..."}`` (the
app's error handler answers the :class:`RequestDeadline` raised inside the body read) and the
connection is closed; one whose answer is not read in time has its connection closed.

Fair share. A greenlet runs until it waits for the network, and a client on a kept-alive
connection that sends its next request at once never makes it wait: left alone, a few busy
connections are answered over and over while the others queue, and the slowest answers take
hundreds of times the median. Each greenlet yields after each answer, so the connections of a
worker take turns.
"""

import gevent
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker
from werkzeug.exceptions import RequestTimeout


class RequestDeadline(RequestTimeout):
    """A request took more than the worker's ``timeout`` (raised in its greenlet)."""


class GeventWorker(_GeventWorker):
    """The gevent worker; each request must be read and answered within ``timeout`` seconds,
    and connections take turns."""

    def handle_request(self, listener_name, req, sock, addr):
        seconds = self.cfg.timeout
        deadline = RequestDeadline(f"the request body was not received within {seconds} s")
        timer = gevent.Timeout(seconds, deadline)
        timer.start()
        try:
            super().handle_request(listener_name, req, sock, addr)
            fired = not timer.pending
        except RequestDeadline as exc:
            if exc is not deadline:
                raise
            self.log.info("Closed a connection from %s: not answered within %s s", addr, seconds)
            raise StopIteration from None  # gunicorn closes the connection
        finally:
            timer.close()
        if fired:
            # The app answered 408 while the body was still coming: close rather than read on.
            raise StopIteration
        gevent.sleep(0)  # the next request on this connection waits for the others' turn
