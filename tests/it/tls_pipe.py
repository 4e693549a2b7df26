"""TLS in front of a plain loopback port, for the git tests: tls_pipe.py CERT KEY PORT.

Prints the port it listens on (127.0.0.1), then serves until killed: each connection's TLS is
terminated and its bytes piped both ways to 127.0.0.1:PORT. A failed handshake (a client that
does not trust the certificate) just closes that connection.
"""

import socket
import ssl
import sys
import threading

cert, key, backend = sys.argv[1], sys.argv[2], int(sys.argv[3])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)


def close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def pipe(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        close(source)
        close(sink)


def handle(raw):
    try:
        tls = context.wrap_socket(raw, server_side=True)
    except OSError:
        close(raw)
        return
    try:
        upstream = socket.create_connection(("127.0.0.1", backend))
    except OSError:
        close(tls)
        return
    threading.Thread(target=pipe, args=(tls, upstream), daemon=True).start()
    pipe(upstream, tls)


listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
while True:
    connection, _ = listener.accept()
    threading.Thread(target=handle, args=(connection,), daemon=True).start()
