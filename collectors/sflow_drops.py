"""The reasons an sFlow dropped-packet notification gives (sflow.org, "sFlow Dropped Packet Notification
Structures"): codes 0-15 follow ICMP's destination-unreachable codes, 256 and above Linux's drop monitor
(the names host-sflow's sflow_drop.h gives them). A code outside the list is named `code_<n>`.
"""

from __future__ import annotations

DROP_REASONS: dict[int, str] = {
    0: "net_unreachable", 1: "host_unreachable", 2: "protocol_unreachable", 3: "port_unreachable",
    4: "frag_needed", 5: "src_route_failed", 6: "dst_net_unknown", 7: "dst_host_unknown", 8: "src_host_isolated",
    9: "dst_net_prohibited", 10: "dst_host_prohibited", 11: "dst_net_tos_unreachable",
    12: "dst_host_tos_unreacheable", 13: "comm_admin_prohibited", 14: "host_precedence_violation",
    15: "precedence_cutoff",
    256: "unknown", 257: "ttl_exceeded", 258: "acl", 259: "no_buffer_space", 260: "red", 261: "traffic_shaping",
    262: "pkt_too_big", 263: "src_mac_is_multicast", 264: "vlan_tag_mismatch", 265: "ingress_vlan_filter",
    266: "ingress_spanning_tree_filter", 267: "port_list_is_empty", 268: "port_loopback_filter",
    269: "blackhole_route", 270: "non_ip", 271: "uc_dip_over_mc_dmac", 272: "dip_is_loopback_address",
    273: "sip_is_mc", 274: "sip_is_loopback_address", 275: "ip_header_corrupted", 276: "ipv4_sip_is_limited_bc",
    277: "ipv6_mc_dip_reserved_scope", 278: "ipv6_mc_dip_interface_local_scope", 279: "unresolved_neigh",
    280: "mc_reverse_path_forwarding", 281: "non_routable_packet", 282: "decap_error", 283: "overlay_smac_is_mc",
    284: "unknown_l2", 285: "unknown_l3", 286: "unknown_l3_exception", 287: "unknown_buffer",
    288: "unknown_tunnel", 289: "unknown_l4",
}


def reason_name(code: int) -> str:
    return DROP_REASONS.get(code, f"code_{code}")
