# MQTT topic names (DESIGN §4). Every topic of a device lives under
# hcp/v1/dev/<device_id>/.
from protocols.record import valid_device_id

PREFIX = "hcp/v1/dev/"

UP_EV = "up/ev"  # device -> collector, QoS 1: a batch of records
DOWN_ACK = "down/ack"  # collector -> device, QoS 1: seqs durably stored
UP_STATUS = "up/status"  # device -> collector, QoS 1, retained, also the will
DOWN_CONFIG = "down/config"  # collector -> device, QoS 1, retained
DOWN_CMD = "down/cmd"  # collector -> device, QoS 1 (held for offline devices)
UP_CMDRES = "up/cmdres"  # device -> collector, QoS 1
DOWN_SEQ = "down/seq"  # collector -> device, QoS 1: the highest seq it holds (a wiped store)

# kind -> (qos, retained)
KINDS = (
    (UP_EV, 1, False),
    (DOWN_ACK, 1, False),
    (UP_STATUS, 1, True),
    (DOWN_CONFIG, 1, True),
    (DOWN_CMD, 1, False),
    (UP_CMDRES, 1, False),
    (DOWN_SEQ, 1, False),
)


class TopicError(ValueError):
    pass


def _kind_row(kind):
    for row in KINDS:
        if row[0] == kind:
            return row
    raise TopicError("unknown topic kind " + repr(kind))


def topic(device_id, kind):
    _kind_row(kind)
    if not valid_device_id(device_id):
        raise TopicError("invalid device id " + repr(device_id))
    return PREFIX + device_id + "/" + kind


def qos(kind):
    return _kind_row(kind)[1]


def retained(kind):
    return _kind_row(kind)[2]


def subscription(kind):
    """The wildcard filter the collector subscribes to for one kind."""
    _kind_row(kind)
    return PREFIX + "+/" + kind


def parse(name):
    """Split a topic into (device_id, kind); TopicError if it is not one of ours."""
    if not isinstance(name, str) or not name.startswith(PREFIX):
        raise TopicError("not an hcp/v1 device topic: " + repr(name))
    rest = name[len(PREFIX) :]
    slash = rest.find("/")
    if slash < 0:
        raise TopicError("no kind in topic " + repr(name))
    device_id = rest[:slash]
    kind = rest[slash + 1 :]
    if not valid_device_id(device_id):
        raise TopicError("invalid device id in topic " + repr(name))
    _kind_row(kind)
    return device_id, kind
