"""Per-kernel rules the analysis needs, decided from what the kernel has (never
from its version number): the idle refcount of each pgmap type, the pin bias,
and pageref's names for the kernel's enum memory_type values.
"""

from __future__ import annotations

from pageref.trace.schema import DEFAULT_PIN_BIAS
from pageref.tracer.facts import KernelFacts

# enum memory_type (include/linux/memremap.h) -> pageref.trace.schema.PGMAP_TYPES
MEMORY_TYPE_NAMES = {
    "MEMORY_DEVICE_PRIVATE": "private",
    "MEMORY_DEVICE_COHERENT": "coherent",
    "MEMORY_DEVICE_FS_DAX": "fsdax",
    "MEMORY_DEVICE_GENERIC": "generic",
    "MEMORY_DEVICE_PCI_P2PDMA": "p2pdma",
}


def pgmap_type_names(facts: KernelFacts) -> dict[int, str]:
    """This kernel's enum memory_type values -> pageref names. The numbering
    shifted in 6.1 (MEMORY_DEVICE_COHERENT added before FS_DAX), so it is read
    from BTF, not assumed."""
    mt = facts.enums.get("memory_type") or {}
    return {v: MEMORY_TYPE_NAMES[k] for k, v in mt.items() if k in MEMORY_TYPE_NAMES}


def pgmap_type_values(facts: KernelFacts) -> dict[str, int]:
    return {name: v for v, name in pgmap_type_names(facts).items()}


def pin_bias(facts: KernelFacts) -> tuple[int, str]:
    """GUP_PIN_COUNTING_BIAS and where it came from."""
    if facts.pin_bias:
        return facts.pin_bias, f"kernel {facts.pin_bias_source}"
    return DEFAULT_PIN_BIAS, ("default: GUP_PIN_COUNTING_BIAS is (1U << 10) since 5.7 "
                              "('mm/gup: track FOLL_PIN pages'); not found in BTF or headers")


def idle_refcount(facts: KernelFacts) -> tuple[dict[str, int], str]:
    """Refcount of an idle (unmapped, unpinned) page of each pgmap type, and why.

    fsdax: 1-based while the kernel special-cases fsdax puts (put_devmap_managed_page
    on 5.x, __put_devmap_managed_page[_refs] / __put_devmap_managed_folio_refs
    after: a put that brings the count to 1 wakes dax_layout_busy_page waiters); 0
    once DAX mappings hold real references (the "fs/dax: Fix ZONE_DEVICE page
    reference counts" series, 6.15, which added vmf_insert_page_mkwrite and
    vmf_insert_folio_pmd and removed the devmap put path). p2pdma: 1 until the same
    series ("mm/mm_init: move p2pdma page refcount initialisation to p2pdma",
    b7e282378773), 0 after. private/coherent: 1-based until ef233450898f ("mm: free
    device private pages have zero refcount", 6.1), which added
    zone_device_page_init() for drivers to take the first reference; 0 after.
    generic (device-dax) pages keep the 1 that memmap_init_zone_device gives them.
    """
    devmap_put = [s for s in ("__put_devmap_managed_folio_refs",
                              "__put_devmap_managed_page_refs", "__put_devmap_managed_page",
                              "put_devmap_managed_page")
                  if facts.has_symbol(s)]
    mapping_refs = [s for s in ("vmf_insert_page_mkwrite", "vmf_insert_folio_pmd")
                    if facts.has_symbol(s)]
    if devmap_put:
        fsdax, why = 1, f"fsdax idles at 1: the kernel has {devmap_put[0]}"
    elif mapping_refs:
        fsdax, why = 0, (f"fsdax idles at 0: DAX mappings hold references "
                         f"({', '.join(mapping_refs)}; no devmap put)")
    else:
        fsdax, why = 1, ("fsdax idles at 1: no vmf_insert_page_mkwrite/vmf_insert_folio_pmd "
                         "(DAX mappings hold no page references)")
    p2pdma = 0 if fsdax == 0 and mapping_refs else 1
    why += f"; p2pdma at {p2pdma} (the same series)"
    if facts.has_symbol("zone_device_page_init"):
        private = 0
        why += "; private/coherent at 0: zone_device_page_init takes the first reference"
    elif any(facts.has_symbol(s) for s in ("free_devmap_managed_page",
                                          "free_zone_device_page")):
        private = 1
        why += ("; private/coherent at 1: no zone_device_page_init, the free path "
                "(free_devmap_managed_page, free_zone_device_page) leaves them at 1")
    else:
        private = 0
        why += ("; private/coherent at 0 assumed: no zone_device_page_init nor a "
                "zone-device free function in this kernel's facts")
    return ({"fsdax": fsdax, "generic": 1, "private": private, "coherent": private,
             "p2pdma": p2pdma}, why)
