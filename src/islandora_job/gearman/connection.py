"""One blocking TCP connection to a gearmand (TCP_NODELAY, connect/read timeouts).

CONTRACT: class Connection(host, port, connect_timeout, read_timeout): send(packet bytes),
read_packet(timeout=None) -> Packet, fileno(), close(); raises ConnectionError subclasses
(ServerUnavailable) on refused/closed/reset, socket.timeout subclasses on timeouts.
"""
