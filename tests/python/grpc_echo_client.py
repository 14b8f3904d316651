"""A gRPC client from another code base than tonic: Python's grpcio (Debian's
python3-grpcio, gRPC's C core), calling the echo service of
tests/proto/echo.proto through the sidecar at sys.argv[1] (with "refused" after it: one call
that the binding is expected to refuse). Messages are
encoded by hand (protobuf's wire format), so no generated code is needed.

Prints one JSON object with what each call returned; exits non-zero on any
unexpected answer.
"""

import json
import sys

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def message(text="", count=0, delay_ms=0, fail_with=0):
    """jose_binding.echo.v1.Message"""
    out = bytearray()
    if text:
        raw = text.encode()
        out += b"\x0a" + varint(len(raw)) + raw
    for tag, value in ((0x10, count), (0x18, delay_ms), (0x20, fail_with)):
        if value:
            out += bytes([tag]) + varint(value)
    return bytes(out)


def reply(data):
    """jose_binding.echo.v1.Reply, as a dict."""
    fields = {1: "text", 2: "seq", 3: "client_id", 4: "form", 5: "deadline"}
    out = {"text": "", "seq": 0, "client_id": "", "form": "", "deadline": ""}
    i = 0
    while i < len(data):
        key = data[i]
        i += 1
        number, wire = key >> 3, key & 7
        value, shift = 0, 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if wire == 2:
            value, i = data[i : i + value].decode(), i + value
        out[fields.get(number, str(number))] = value
    return out


def main():
    channel = grpc.insecure_channel(sys.argv[1])
    ident = lambda b: b
    path = "/jose_binding.echo.v1.Echo/"
    say = channel.unary_unary(path + "Say", request_serializer=ident, response_deserializer=reply)
    count = channel.unary_stream(path + "Count", request_serializer=ident, response_deserializer=reply)
    collect = channel.stream_unary(path + "Collect", request_serializer=ident, response_deserializer=reply)
    chat = channel.stream_stream(path + "Chat", request_serializer=ident, response_deserializer=reply)
    seen = {}
    if sys.argv[2:] == ["refused"]:
        try:
            say(message("hello"), timeout=10)
            seen["refused"] = None
        except grpc.RpcError as e:
            seen["refused"] = [e.code().name, e.details()]
        print(json.dumps(seen))
        return

    r = say(message("hello"), timeout=10)
    seen["say"] = r
    seen["deadline"] = r["deadline"]
    seen["count"] = [x["seq"] for x in count(message("n", count=50), timeout=10)]
    r = collect(iter([message(f"{i},") for i in range(50)]), timeout=10)
    seen["collect"] = {"seq": r["seq"], "text": r["text"]}
    chatted = [(x["seq"], x["text"]) for x in chat(iter([message(str(i)) for i in range(1000)]), timeout=30)]
    seen["chat_in_order"] = chatted == [(i, str(i)) for i in range(1000)]
    try:
        say(message("no such order", fail_with=5), timeout=10)
        seen["status"] = None
    except grpc.RpcError as e:
        seen["status"] = [e.code().name, e.details()]
    try:
        say(message("late", delay_ms=3000), timeout=0.3)
        seen["late"] = None
    except grpc.RpcError as e:
        seen["late"] = e.code().name
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
