"""One field table per header, in the order its spec draws it, compiled once to byte offsets and sizes.

Each table lists (field, bits) as the spec's header diagram does (IEEE 802.3/802.1Q, RFC 791/8200/793/768/
3032/2784/2890/7348/8926, draft-foschiano-erspan, IBTA annex A17, 802.1Qbb, libpcap's LINKTYPE pages,
<linux/if_packet.h>). The walk (collectors.decode_walk), the column readers (collectors.decode) and the live
ring (collectors.afpacket) read the module-level int constants below, never literals: numba freezes them
into the compiled code, so a change here needs the numba cache (`collectors/__pycache__/*.nbi|*.nbc`) cleared.
"""

from __future__ import annotations

from types import MappingProxyType

Table = tuple[tuple[str, int], ...]


def _in_bytes(*fields: tuple[str, int]) -> Table:
    """A table written with byte sizes (sFlow's XDR fields are whole 4- or 8-byte words) in bits."""
    return tuple((name, size * 8) for name, size in fields)


HEADERS: MappingProxyType[str, Table] = MappingProxyType({
    "ethernet": (("destination", 48), ("source", 48), ("ethertype", 16)),
    "dot1q": (("pcp", 3), ("dei", 1), ("vid", 12), ("ethertype", 16)),  # the tag after its TPID
    "mpls": (("label", 20), ("tc", 3), ("bottom_of_stack", 1), ("ttl", 8)),
    "ipv4": (
        ("version", 4), ("ihl", 4), ("dscp", 6), ("ecn", 2), ("total_length", 16), ("identification", 16),
        ("flags", 3), ("fragment_offset", 13), ("ttl", 8), ("protocol", 8), ("header_checksum", 16),
        ("source", 32), ("destination", 32),
    ),
    "ipv6": (
        ("version", 4), ("traffic_class", 8), ("flow_label", 20), ("payload_length", 16), ("next_header", 8),
        ("hop_limit", 8), ("source", 128), ("destination", 128),
    ),
    "ipv6_extension": (("next_header", 8), ("header_length", 8), ("options", 48)),  # hop-by-hop, routing, dest
    "ipv6_fragment": (
        ("next_header", 8), ("reserved", 8), ("fragment_offset", 13), ("reserved2", 2), ("more", 1),
        ("identification", 32),
    ),
    "arp": (
        ("hardware_type", 16), ("protocol_type", 16), ("hardware_length", 8), ("protocol_length", 8),
        ("operation", 16), ("sender_hardware", 48), ("sender_protocol", 32), ("target_hardware", 48),
        ("target_protocol", 32),
    ),
    "tcp": (
        ("source_port", 16), ("destination_port", 16), ("sequence", 32), ("acknowledgment", 32),
        ("data_offset", 4), ("reserved", 4), ("flags", 8), ("window", 16), ("checksum", 16), ("urgent", 16),
    ),
    "udp": (("source_port", 16), ("destination_port", 16), ("length", 16), ("checksum", 16)),
    "gre": (
        ("checksum_present", 1), ("routing_present", 1), ("key_present", 1), ("sequence_present", 1),
        ("reserved0", 9), ("version", 3), ("protocol_type", 16),
    ),
    "gre_option": (("value", 32),),  # checksum+reserved1, key, sequence number: each present by its flag
    "erspan_ii": (
        ("version", 4), ("vlan", 12), ("cos", 3), ("encapsulation", 2), ("truncated", 1), ("session_id", 10),
        ("reserved", 12), ("index", 20),
    ),
    "erspan_iii": (
        ("version", 4), ("vlan", 12), ("cos", 3), ("bso", 2), ("truncated", 1), ("session_id", 10),
        ("timestamp", 32), ("sgt", 16), ("p", 1), ("frame_type", 5), ("hardware_id", 6), ("direction", 1),
        ("granularity", 2), ("optional", 1),
    ),
    "erspan_iii_platform": (("platform_id", 6), ("platform_info", 26), ("timestamp_seconds", 32)),
    "vxlan": (("flags", 8), ("reserved", 24), ("vni", 24), ("reserved2", 8)),
    "geneve": (
        ("version", 2), ("options_length", 6), ("oam", 1), ("critical", 1), ("reserved", 6),
        ("protocol_type", 16), ("vni", 24), ("reserved2", 8),
    ),
    "bth": (
        ("opcode", 8), ("solicited_event", 1), ("migration", 1), ("pad_count", 2), ("transport_version", 4),
        ("partition_key", 16), ("fecn", 1), ("becn", 1), ("reserved6", 6), ("destination_qp", 24),
        ("ack_request", 1), ("reserved7", 7), ("psn", 24),
    ),
    "aeth": (("syndrome", 8), ("msn", 24)),
    "reth": (("virtual_address", 64), ("r_key", 32), ("dma_length", 32)),
    "cnp": (("reserved", 128),),  # after the BTH
    "pfc": (  # MAC control frame payload, 802.1Qbb
        ("opcode", 16), ("reserved", 8), ("class_enable", 8),
        *((f"quanta{priority}", 16) for priority in range(8)),
    ),
    "linux_sll": (
        ("packet_type", 16), ("arphrd_type", 16), ("address_length", 16), ("address", 64), ("protocol", 16),
    ),
    "linux_sll2": (
        ("protocol", 16), ("reserved", 16), ("interface_index", 32), ("arphrd_type", 16), ("packet_type", 8),
        ("address_length", 8), ("address", 64),
    ),
    "cisco_hdlc": (("address", 8), ("control", 8), ("protocol", 16)),
    "ppp_hdlc": (("address", 8), ("control", 8), ("protocol", 16)),  # PPP in HDLC-like framing (RFC 1662)
    # sFlow v5 (sflow.org): a sample's fixed fields up to its first record, and the records the collector
    # reads; sizes in bytes as the spec writes them (a list<> or opaque<> is its 4-byte count here)
    "sflow_flow_sample": _in_bytes(
        ("sequence_number", 4), ("source_id", 4), ("sampling_rate", 4), ("sample_pool", 4), ("drops", 4),
        ("input", 4), ("output", 4), ("flow_records", 4),
    ),
    "sflow_counters_sample": _in_bytes(
        ("sequence_number", 4), ("source_id", 4), ("counters", 4),
    ),
    "sflow_flow_sample_expanded": _in_bytes(
        ("sequence_number", 4), ("source_id_type", 4), ("source_id_index", 4), ("sampling_rate", 4),
        ("sample_pool", 4), ("drops", 4), ("input_format", 4), ("input_value", 4), ("output_format", 4),
        ("output_value", 4), ("flow_records", 4),
    ),
    "sflow_counters_sample_expanded": _in_bytes(
        ("sequence_number", 4), ("source_id_type", 4), ("source_id_index", 4), ("counters", 4),
    ),
    "sflow_discarded_packet": _in_bytes(
        ("sequence_number", 4), ("source_id_type", 4), ("source_id_index", 4), ("drops", 4), ("inputifindex", 4),
        ("outputifindex", 4), ("reason", 4), ("discard_records", 4),
    ),
    "sflow_raw_packet_header": _in_bytes(
        ("header_protocol", 4), ("frame_length", 4), ("stripped", 4), ("header", 4),
    ),
    "sflow_if_counters": _in_bytes(
        ("ifIndex", 4), ("ifType", 4), ("ifSpeed", 8), ("ifDirection", 4), ("ifStatus", 4), ("ifInOctets", 8),
        ("ifInUcastPkts", 4), ("ifInMulticastPkts", 4), ("ifInBroadcastPkts", 4), ("ifInDiscards", 4),
        ("ifInErrors", 4), ("ifInUnknownProtos", 4), ("ifOutOctets", 8), ("ifOutUcastPkts", 4),
        ("ifOutMulticastPkts", 4), ("ifOutBroadcastPkts", 4), ("ifOutDiscards", 4), ("ifOutErrors", 4),
        ("ifPromiscuousMode", 4),
    ),
    "sflow_ethernet_counters": _in_bytes(
        ("dot3StatsAlignmentErrors", 4), ("dot3StatsFCSErrors", 4), ("dot3StatsSingleCollisionFrames", 4),
        ("dot3StatsMultipleCollisionFrames", 4), ("dot3StatsSQETestErrors", 4), ("dot3StatsDeferredTransmissions", 4),
        ("dot3StatsLateCollisions", 4), ("dot3StatsExcessiveCollisions", 4),
        ("dot3StatsInternalMacTransmitErrors", 4), ("dot3StatsCarrierSenseErrors", 4), ("dot3StatsFrameTooLongs", 4),
        ("dot3StatsInternalMacReceiveErrors", 4), ("dot3StatsSymbolErrors", 4),
    ),
    "tpacket_block": (  # struct tpacket_block_desc + tpacket_hdr_v1 (host byte order)
        ("version", 32), ("offset_to_priv", 32), ("block_status", 32), ("num_pkts", 32),
        ("offset_to_first_pkt", 32), ("blk_len", 32),
    ),
    "tpacket3": (  # struct tpacket3_hdr (host byte order)
        ("tp_next_offset", 32), ("tp_sec", 32), ("tp_nsec", 32), ("tp_snaplen", 32), ("tp_len", 32),
        ("tp_status", 32), ("tp_mac", 16), ("tp_net", 16), ("tp_rxhash", 32), ("tp_vlan_tci", 32),
        ("tp_vlan_tpid", 16),
    ),
})


def bits(header: str, name: str) -> tuple[int, int]:
    """(bit offset within the header, width in bits) of `name`."""
    at = 0
    for field, bits in HEADERS[header]:
        if field == name:
            return at, bits
        at += bits
    raise KeyError(f"{header} has no field {name!r}")


def offset(header: str, name: str) -> int:
    """Byte offset of the first byte holding `name` within `header`."""
    return bits(header, name)[0] // 8


def size(header: str) -> int:
    """The header's fixed length in bytes (its table's bits; every table is whole bytes)."""
    total = sum(width for _, width in HEADERS[header])
    if total % 8:
        raise ValueError(f"{header} table is {total} bits, not whole bytes")
    return total // 8


def mask(header: str, name: str, word_bytes: int) -> tuple[int, int]:
    """(mask, shift) of `name` in the big-endian word of `word_bytes` bytes read at offset(header, name)."""
    start, width = bits(header, name)
    shift = word_bytes * 8 - (start % 8) - width
    if shift < 0:
        raise ValueError(f"{header}.{name} does not fit a {word_bytes}-byte word")
    return ((1 << width) - 1) << shift, shift


ETH_HEADER = size("ethernet")
ETH_TYPE = offset("ethernet", "ethertype")
VLAN_TAG = size("dot1q")
VLAN_VID_MASK = mask("dot1q", "vid", 2)[0]
VLAN_TYPE = offset("dot1q", "ethertype")
MPLS_ENTRY = size("mpls")
MPLS_LABEL_SHIFT = mask("mpls", "label", 4)[1]
MPLS_BOTTOM = offset("mpls", "bottom_of_stack")
MPLS_BOTTOM_MASK = mask("mpls", "bottom_of_stack", 1)[0]

IPV4_HEADER = size("ipv4")
IPV4_TOS = offset("ipv4", "dscp")
IPV4_TOTAL_LENGTH = offset("ipv4", "total_length")
IPV4_FRAGMENT = offset("ipv4", "fragment_offset")
IPV4_FRAGMENT_MASK = mask("ipv4", "fragment_offset", 2)[0]
IPV4_PROTOCOL = offset("ipv4", "protocol")
IPV4_SOURCE = offset("ipv4", "source")
IPV4_DESTINATION = offset("ipv4", "destination")
IPV6_HEADER = size("ipv6")
IPV6_PAYLOAD_LENGTH = offset("ipv6", "payload_length")
IPV6_NEXT_HEADER = offset("ipv6", "next_header")
IPV6_SOURCE = offset("ipv6", "source")
IPV6_DESTINATION = offset("ipv6", "destination")
IPV6_EXTENSION = size("ipv6_extension")
IPV6_EXTENSION_LENGTH = offset("ipv6_extension", "header_length")
IPV6_FRAGMENT_HEADER = size("ipv6_fragment")
IPV6_FRAGMENT_OFFSET = offset("ipv6_fragment", "fragment_offset")
IPV6_FRAGMENT_SHIFT = mask("ipv6_fragment", "fragment_offset", 2)[1]

ARP_PROTOCOL_TYPE = offset("arp", "protocol_type")
ARP_HARDWARE_LENGTH = offset("arp", "hardware_length")
ARP_PROTOCOL_LENGTH = offset("arp", "protocol_length")
ARP_SENDER_PROTOCOL = offset("arp", "sender_protocol")
ARP_TARGET_PROTOCOL = offset("arp", "target_protocol")
ARP_FIXED = offset("arp", "sender_hardware")  # before the addresses, whose lengths the header gives
ARP_IPV4_OVER_ETHERNET = size("arp")

TCP_HEADER = size("tcp")
TCP_DATA_OFFSET = offset("tcp", "data_offset")
TCP_FLAGS = offset("tcp", "flags")
UDP_HEADER = size("udp")
L4_SOURCE_PORT = offset("udp", "source_port")  # the same in TCP and UDP
L4_DESTINATION_PORT = offset("udp", "destination_port")

GRE_HEADER = size("gre")
GRE_PROTOCOL = offset("gre", "protocol_type")
GRE_VERSION_MASK = mask("gre", "version", 2)[0]
GRE_OPTION = size("gre_option")
ERSPAN_II_HEADER = size("erspan_ii")
ERSPAN_III_HEADER = size("erspan_iii")
ERSPAN_III_PLATFORM = size("erspan_iii_platform")
ERSPAN_SESSION = offset("erspan_ii", "session_id")
ERSPAN_SESSION_MASK = mask("erspan_ii", "session_id", 2)[0]
ERSPAN_III_TIMESTAMP = offset("erspan_iii", "timestamp")
ERSPAN_III_FLAGS = offset("erspan_iii", "optional")  # the byte holding D, granularity and O
ERSPAN_III_GRANULARITY_MASK, ERSPAN_III_GRANULARITY_SHIFT = mask("erspan_iii", "granularity", 1)
ERSPAN_III_OPTIONAL_MASK = mask("erspan_iii", "optional", 1)[0]
ERSPAN_PLATFORM_ID = offset("erspan_iii_platform", "platform_id")
ERSPAN_PLATFORM_ID_SHIFT = mask("erspan_iii_platform", "platform_id", 1)[1]
ERSPAN_PLATFORM_SECONDS = offset("erspan_iii_platform", "timestamp_seconds")

VXLAN_HEADER = size("vxlan")
VXLAN_VNI = offset("vxlan", "vni")
GENEVE_HEADER = size("geneve")
GENEVE_OPTIONS_LENGTH_MASK = mask("geneve", "options_length", 1)[0]
GENEVE_PROTOCOL = offset("geneve", "protocol_type")
GENEVE_VNI = offset("geneve", "vni")

BTH_HEADER = size("bth")
BTH_OPCODE = offset("bth", "opcode")
BTH_FLAGS = offset("bth", "fecn")  # the byte holding FECN and BECN
BTH_FECN_MASK = mask("bth", "fecn", 1)[0]
BTH_BECN_MASK = mask("bth", "becn", 1)[0]
BTH_DESTINATION_QP = offset("bth", "destination_qp")
BTH_PSN = offset("bth", "psn")
AETH_HEADER = size("aeth")
AETH_SYNDROME = offset("aeth", "syndrome")
RETH_HEADER = size("reth")
CNP_PAYLOAD = size("cnp")

PFC_FRAME = size("pfc")
PFC_OPCODE_AT = offset("pfc", "opcode")
PFC_CLASS_ENABLE = offset("pfc", "class_enable")
PFC_QUANTA = offset("pfc", "quanta0")

SLL_HEADER = size("linux_sll")
SLL_PROTOCOL = offset("linux_sll", "protocol")
SLL2_HEADER = size("linux_sll2")
SLL2_PROTOCOL = offset("linux_sll2", "protocol")
HDLC_HEADER = size("cisco_hdlc")
HDLC_PROTOCOL = offset("cisco_hdlc", "protocol")
PPP_HDLC_HEADER = size("ppp_hdlc")
PPP_PROTOCOL = offset("ppp_hdlc", "protocol")

BLOCK_STATUS = offset("tpacket_block", "block_status")
BLOCK_NUM_PKTS = offset("tpacket_block", "num_pkts")
BLOCK_FIRST_PKT = offset("tpacket_block", "offset_to_first_pkt")
BLOCK_LEN = offset("tpacket_block", "blk_len")
PKT_NEXT = offset("tpacket3", "tp_next_offset")
PKT_SEC = offset("tpacket3", "tp_sec")
PKT_NSEC = offset("tpacket3", "tp_nsec")
PKT_SNAPLEN = offset("tpacket3", "tp_snaplen")
PKT_LEN = offset("tpacket3", "tp_len")
PKT_STATUS = offset("tpacket3", "tp_status")
PKT_MAC = offset("tpacket3", "tp_mac")
PKT_VLAN_TCI = offset("tpacket3", "tp_vlan_tci")
PKT_VLAN_TPID = offset("tpacket3", "tp_vlan_tpid")
