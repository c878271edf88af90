/*
 * sPAPR "virtio-vio" transport device for the vioboot project
 *
 * A VIO device on the pseries "/vdevice" bus that owns a CRQ and a TCE
 * window, like spapr-vscsi, but that does not implement any device
 * protocol itself.  Every CRQ entry the guest sends with H_SEND_CRQ is
 * forwarded to an external process (the VIO server) over a chardev, and
 * that process asks this device to deliver CRQ entries to the guest and
 * to read or write guest memory through the device's TCE window (remote
 * DMA, permission-checked by the TCE table).
 *
 * The framing on the chardev is documented byte for byte in
 * docs/vio-socket.md of the vioboot repository; keep both in step.
 *
 * Copyright (c) 2025 The vioboot authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 2 of the License, or
 * (at your option) any later version.
 *
 * This program is distributed in the hope that it will be useful,
 * but WITHOUT ANY WARRANTY; without even the implied warranty of
 * MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
 * GNU General Public License for more details.
 *
 * You should have received a copy of the GNU General Public License
 * along with this program; if not, see <http://www.gnu.org/licenses/>.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "qapi/error.h"
#include "migration/vmstate.h"
#include "sysemu/runstate.h"
#include "chardev/char-fe.h"
#include "hw/ppc/spapr.h"
#include "hw/ppc/spapr_vio.h"
#include "hw/qdev-properties.h"
#include "hw/qdev-properties-system.h"
#include "qom/object.h"

/* Wire format: see docs/vio-socket.md. All integers little-endian. */
#define VV_PROTO_VERSION        1
#define VV_HDR_LEN              8
#define VV_MAX_RDMA_LEN         0x100000u            /* 1 MiB */
#define VV_RDMA_REQ_LEN         24                   /* tag, ioba, len, rsvd */
#define VV_MAX_PAYLOAD_LEN      (VV_RDMA_REQ_LEN + VV_MAX_RDMA_LEN)

/* QEMU -> server */
#define VV_MSG_HELLO            0x01
#define VV_MSG_GUEST_CRQ        0x02
#define VV_MSG_GUEST_EVENT      0x03
#define VV_MSG_RESULT           0x04
#define VV_MSG_READ_DATA        0x05
/* server -> QEMU */
#define VV_MSG_SEND_CRQ         0x10
#define VV_MSG_RDMA_READ        0x11
#define VV_MSG_RDMA_WRITE       0x12

#define VV_HELLO_LEN            32
#define VV_HELLO_F_CRQ_REGISTERED  0x1u

/* GUEST_EVENT kinds the device can observe (1..3 are reserved, see doc) */
#define VV_EVENT_RESET          4

#define VV_CRQ_LEN              16
#define VV_SEND_CRQ_LEN         (8 + VV_CRQ_LEN)
#define VV_RESULT_LEN           16

/* CRQ header byte values (PAPR) */
#define CRQ_VALID_BIT           0x80
#define CRQ_TRANSPORT_EVENT     0xFF
#define CRQ_TE_PARTNER_FAILED   0x01
#define CRQ_TE_PARTNER_MIGRATED 0x06

/* Size of the TCE window, the same as spapr-vscsi's. */
#define VV_RTCE_WINDOW_SIZE     0x10000000

#define TYPE_VIO_SPAPR_VIRTIO_VIO_DEVICE "spapr-virtio-vio"
OBJECT_DECLARE_SIMPLE_TYPE(SpaprVirtioVio, VIO_SPAPR_VIRTIO_VIO_DEVICE)

struct SpaprVirtioVio {
    SpaprVioDevice vdev;
    CharBackend chr;

    /* true between CHR_EVENT_OPENED and CHR_EVENT_CLOSED */
    bool connected;
    /* a protocol error was seen: discard input until the drop BH runs */
    bool broken;
    QEMUBH *drop_bh;

    /* reassembly of the frame being received */
    uint8_t hdr[VV_HDR_LEN];
    uint32_t hdr_fill;
    uint32_t msg_type;
    uint32_t payload_len;
    uint32_t payload_fill;
    uint8_t *payload;

    /*
     * Loaded from an incoming migration: once the guest runs again it is
     * told, as PAPR's hypervisor tells a partition after it moved, with a
     * "partner migrated" transport event on its CRQ.
     */
    bool migrated;
    VMChangeStateEntry *vm_change;
};

/*
 * Output
 */

/* Sends one frame; false if the connection could not take it. */
static bool vv_send_frame(SpaprVirtioVio *s, uint32_t type,
                          const void *payload, uint32_t len)
{
    uint32_t total = VV_HDR_LEN + len;
    g_autofree uint8_t *frame = NULL;
    int ret;

    if (!s->connected) {
        return false;
    }

    frame = g_malloc(total);
    stl_le_p(frame, type);
    stl_le_p(frame + 4, len);
    if (len) {
        memcpy(frame + VV_HDR_LEN, payload, len);
    }

    /*
     * Blocking write: the server must keep reading.  The chardev write lock
     * serialises callers; all of them hold the BQL anyway (the main loop,
     * and vCPUs inside H_SEND_CRQ).
     */
    ret = qemu_chr_fe_write_all(&s->chr, frame, total);
    if (ret != (int)total) {
        warn_report("spapr-virtio-vio %x: short write to server (%d of %u)",
                    s->vdev.reg, ret, total);
        return false;
    }
    return true;
}

static void vv_send_result(SpaprVirtioVio *s, uint64_t tag, int64_t status)
{
    uint8_t res[VV_RESULT_LEN];

    stq_le_p(res, tag);
    stq_le_p(res + 8, (uint64_t)status);
    vv_send_frame(s, VV_MSG_RESULT, res, sizeof(res));
}

static void vv_send_hello(SpaprVirtioVio *s)
{
    SpaprVioDevice *vdev = &s->vdev;
    uint8_t hello[VV_HELLO_LEN];
    uint32_t flags = 0;
    uint64_t ioba = 0, size = 0;

    if (vdev->tcet) {
        ioba = vdev->tcet->bus_offset;
        size = (uint64_t)vdev->tcet->nb_table << vdev->tcet->page_shift;
    }
    if (vdev->crq.qsize) {
        flags |= VV_HELLO_F_CRQ_REGISTERED;
    }

    stl_le_p(hello, VV_PROTO_VERSION);
    stl_le_p(hello + 4, vdev->reg);
    stl_le_p(hello + 8, vdev->tcet ? vdev->tcet->liobn : 0);
    stl_le_p(hello + 12, flags);
    stq_le_p(hello + 16, ioba);
    stq_le_p(hello + 24, size);
    vv_send_frame(s, VV_MSG_HELLO, hello, sizeof(hello));
}

static void vv_send_event(SpaprVirtioVio *s, uint32_t kind)
{
    uint8_t ev[4];

    stl_le_p(ev, kind);
    vv_send_frame(s, VV_MSG_GUEST_EVENT, ev, sizeof(ev));
}

/*
 * Delivers one 16-byte entry into the guest's CRQ.  Returns an hcall
 * status as H_SEND_CRQ on PowerVM would give it to the sender.
 */
static int64_t vv_deliver_crq(SpaprVirtioVio *s, uint8_t *entry)
{
    SpaprVioDevice *vdev = &s->vdev;
    int rc;

    if (!vdev->crq.qsize) {
        /* the guest has no CRQ registered (the core would error_report) */
        return H_CLOSED;
    }
    rc = spapr_vio_send_crq(vdev, entry);
    if (rc == 0) {
        return H_SUCCESS;
    }
    if (rc > 0) {
        /* the slot at the tail still has its valid bit set: queue full */
        return H_DROPPED;
    }
    /* the queue's TCEs do not let the device write it (H_DEST_PARM) */
    return rc;
}

/*
 * Input: guest -> device (H_SEND_CRQ)
 */

/*
 * SendFunc of the CRQ: h_send_crq() in spapr_vio.c returns our value as
 * the hcall status.  @crq holds word0 then word1 (r5, r6), big-endian.
 */
static int vv_guest_send_crq(SpaprVioDevice *vdev, uint8_t *crq)
{
    SpaprVirtioVio *s = VIO_SPAPR_VIRTIO_VIO_DEVICE(vdev);

    if (!s->connected || s->broken) {
        return H_CLOSED;
    }
    if (!vv_send_frame(s, VV_MSG_GUEST_CRQ, crq, VV_CRQ_LEN)) {
        return H_CLOSED;
    }
    return H_SUCCESS;
}

/*
 * Input: server -> device
 */

static void vv_drop_bh(void *opaque)
{
    SpaprVirtioVio *s = opaque;

    if (s->broken) {
        qemu_chr_fe_disconnect(&s->chr);
    }
}

static void vv_reset_rx(SpaprVirtioVio *s)
{
    g_free(s->payload);
    s->payload = NULL;
    s->hdr_fill = 0;
    s->msg_type = 0;
    s->payload_len = 0;
    s->payload_fill = 0;
}

static void G_GNUC_PRINTF(2, 3)
vv_protocol_error(SpaprVirtioVio *s, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    warn_report("spapr-virtio-vio %x: protocol error: %s; dropping the "
                "connection", s->vdev.reg, msg);

    s->broken = true;
    /* not from inside the chardev read callback: defer the disconnect */
    qemu_bh_schedule(s->drop_bh);
}

static void vv_handle_send_crq(SpaprVirtioVio *s, const uint8_t *p,
                               uint32_t len)
{
    uint8_t entry[VV_CRQ_LEN];
    uint64_t tag;

    if (len != VV_SEND_CRQ_LEN) {
        vv_protocol_error(s, "SEND_CRQ payload of %u bytes", len);
        return;
    }
    tag = ldq_le_p(p);
    memcpy(entry, p + 8, VV_CRQ_LEN);

    if (!(entry[0] & CRQ_VALID_BIT)) {
        /* would desynchronise the guest's ring: refuse, as PAPR does */
        vv_send_result(s, tag, H_PARAMETER);
        return;
    }
    vv_send_result(s, tag, vv_deliver_crq(s, entry));
}

static void vv_handle_rdma_read(SpaprVirtioVio *s, const uint8_t *p,
                                uint32_t len)
{
    g_autofree uint8_t *reply = NULL;
    uint64_t tag, ioba;
    uint32_t dlen;
    int64_t status;

    if (len != VV_RDMA_REQ_LEN) {
        vv_protocol_error(s, "RDMA_READ payload of %u bytes", len);
        return;
    }
    tag = ldq_le_p(p);
    ioba = ldq_le_p(p + 8);
    dlen = ldl_le_p(p + 16);

    if (dlen > VV_MAX_RDMA_LEN) {
        reply = g_malloc(VV_RESULT_LEN);
        status = H_PARAMETER;
    } else {
        reply = g_malloc(VV_RESULT_LEN + dlen);
        status = spapr_vio_dma_read(&s->vdev, ioba, reply + VV_RESULT_LEN,
                                    dlen);
        /* dma_memory_read() fails if any page is refused; no data then */
    }
    stq_le_p(reply, tag);
    stq_le_p(reply + 8, (uint64_t)status);
    vv_send_frame(s, VV_MSG_READ_DATA, reply,
                  VV_RESULT_LEN + (status == H_SUCCESS ? dlen : 0));
}

static void vv_handle_rdma_write(SpaprVirtioVio *s, const uint8_t *p,
                                 uint32_t len)
{
    uint64_t tag, ioba;
    uint32_t dlen;
    int64_t status;

    if (len < VV_RDMA_REQ_LEN) {
        vv_protocol_error(s, "RDMA_WRITE payload of %u bytes", len);
        return;
    }
    tag = ldq_le_p(p);
    ioba = ldq_le_p(p + 8);
    dlen = ldl_le_p(p + 16);
    if (dlen != len - VV_RDMA_REQ_LEN) {
        vv_protocol_error(s, "RDMA_WRITE len %u but %u data bytes", dlen,
                          len - VV_RDMA_REQ_LEN);
        return;
    }

    /*
     * All or nothing: dma_memory_write() would go on past a refused page and
     * write the permitted ones, so check the whole range first (under the
     * BQL, the guest cannot change its TCEs in between).
     */
    if (!spapr_vio_dma_valid(&s->vdev, ioba, dlen,
                             DMA_DIRECTION_FROM_DEVICE)) {
        status = H_DEST_PARM;
    } else {
        status = spapr_vio_dma_write(&s->vdev, ioba, p + VV_RDMA_REQ_LEN,
                                     dlen);
    }
    vv_send_result(s, tag, status);
}

static void vv_dispatch(SpaprVirtioVio *s, uint32_t type, const uint8_t *p,
                        uint32_t len)
{
    switch (type) {
    case VV_MSG_SEND_CRQ:
        vv_handle_send_crq(s, p, len);
        break;
    case VV_MSG_RDMA_READ:
        vv_handle_rdma_read(s, p, len);
        break;
    case VV_MSG_RDMA_WRITE:
        vv_handle_rdma_write(s, p, len);
        break;
    default:
        /* every request starts with its tag: answer "not supported" */
        if (len < 8) {
            vv_protocol_error(s, "unknown frame type 0x%x with %u bytes",
                              type, len);
            return;
        }
        vv_send_result(s, ldq_le_p(p), H_FUNCTION);
        break;
    }
}

static int vv_can_read(void *opaque)
{
    SpaprVirtioVio *s = opaque;

    if (s->broken) {
        return 4096;            /* swallow until the drop BH runs */
    }
    if (s->hdr_fill < VV_HDR_LEN) {
        return VV_HDR_LEN - s->hdr_fill;
    }
    return s->payload_len - s->payload_fill;
}

static void vv_read(void *opaque, const uint8_t *buf, int size)
{
    SpaprVirtioVio *s = opaque;

    /* a failed reply write may close the connection mid-buffer */
    while (size > 0 && s->connected && !s->broken) {
        uint32_t n;

        if (s->hdr_fill < VV_HDR_LEN) {
            n = MIN((uint32_t)size, VV_HDR_LEN - s->hdr_fill);
            memcpy(s->hdr + s->hdr_fill, buf, n);
            s->hdr_fill += n;
            buf += n;
            size -= n;
            if (s->hdr_fill < VV_HDR_LEN) {
                break;
            }
            s->msg_type = ldl_le_p(s->hdr);
            s->payload_len = ldl_le_p(s->hdr + 4);
            s->payload_fill = 0;
            if (s->payload_len > VV_MAX_PAYLOAD_LEN) {
                vv_protocol_error(s, "frame type 0x%x of %u bytes exceeds "
                                  "the maximum of %u", s->msg_type,
                                  s->payload_len, VV_MAX_PAYLOAD_LEN);
                vv_reset_rx(s);
                break;
            }
            s->payload = g_malloc(MAX(s->payload_len, 1));
        } else {
            n = MIN((uint32_t)size, s->payload_len - s->payload_fill);
            memcpy(s->payload + s->payload_fill, buf, n);
            s->payload_fill += n;
            buf += n;
            size -= n;
        }

        if (s->payload_fill == s->payload_len) {
            /*
             * Take the frame out of @s first: a reply whose write fails can
             * close the connection, and the close event resets @s.
             */
            g_autofree uint8_t *payload = s->payload;
            uint32_t type = s->msg_type, len = s->payload_len;

            s->payload = NULL;
            vv_reset_rx(s);
            vv_dispatch(s, type, payload, len);
        }
    }
}

static void vv_chr_event(void *opaque, QEMUChrEvent event)
{
    SpaprVirtioVio *s = opaque;
    SpaprVioDevice *vdev = &s->vdev;
    uint8_t te[VV_CRQ_LEN] = { CRQ_TRANSPORT_EVENT, CRQ_TE_PARTNER_FAILED };
    int64_t rc;

    switch (event) {
    case CHR_EVENT_OPENED:
        vv_reset_rx(s);
        s->broken = false;
        s->connected = true;
        vv_send_hello(s);
        break;
    case CHR_EVENT_CLOSED:
        if (!s->connected) {
            break;
        }
        s->connected = false;
        s->broken = false;
        vv_reset_rx(s);
        if (vdev->crq.qsize) {
            rc = vv_deliver_crq(s, te);
            if (rc != H_SUCCESS) {
                warn_report("spapr-virtio-vio %x: could not post the "
                            "partner-failed event to the guest (%" PRId64 ")",
                            vdev->reg, rc);
            }
        }
        break;
    default:
        break;
    }
}

/*
 * Migration
 *
 * The CRQ's registration moves with the guest (VMSTATE_SPAPR_VIO: its
 * address, size and next slot; the TCE window migrates as its own table).
 * The server's session does not: on the destination the device is
 * connected to a server of its own (which may be the same process,
 * reconnected), and the guest learns of the move from a "partner migrated"
 * event.  It then re-enables its CRQ (H_ENABLE_CRQ), sends INIT and
 * replays the virtio device's state to the new session, which resumes the
 * queues from their used indices in guest memory (docs/virtio-vio.md).
 */

static int vv_post_load(void *opaque, int version_id)
{
    SpaprVirtioVio *s = opaque;

    s->migrated = true;
    return 0;
}

static void vv_vm_state_change(void *opaque, bool running, RunState state)
{
    SpaprVirtioVio *s = opaque;
    uint8_t te[VV_CRQ_LEN] = { CRQ_TRANSPORT_EVENT, CRQ_TE_PARTNER_MIGRATED };
    int64_t rc;

    if (!running || !s->migrated) {
        return;
    }
    s->migrated = false;
    if (!s->vdev.crq.qsize) {
        return;                 /* no CRQ registered: nothing to tell */
    }
    rc = vv_deliver_crq(s, te);
    if (rc != H_SUCCESS) {
        warn_report("spapr-virtio-vio %x: could not post the partner-migrated "
                    "event to the guest (%" PRId64 ")", s->vdev.reg, rc);
    }
}

/*
 * Device
 */

static void spapr_virtio_vio_reset(SpaprVioDevice *vdev)
{
    SpaprVirtioVio *s = VIO_SPAPR_VIRTIO_VIO_DEVICE(vdev);

    /* the core has already freed the guest's CRQ and cleared its TCEs */
    if (s->connected && !s->broken) {
        vv_send_event(s, VV_EVENT_RESET);
    }
}

static void spapr_virtio_vio_realize(SpaprVioDevice *vdev, Error **errp)
{
    SpaprVirtioVio *s = VIO_SPAPR_VIRTIO_VIO_DEVICE(vdev);

    if (!qemu_chr_fe_backend_connected(&s->chr)) {
        error_setg(errp, "spapr-virtio-vio needs a chardev (chardev=ID)");
        return;
    }

    vdev->crq.SendFunc = vv_guest_send_crq;
    s->drop_bh = qemu_bh_new(vv_drop_bh, s);
    s->vm_change = qemu_add_vm_change_state_handler(vv_vm_state_change, s);

    qemu_chr_fe_set_handlers(&s->chr, vv_can_read, vv_read, vv_chr_event,
                             NULL, s, NULL, true);
}

static Property spapr_virtio_vio_properties[] = {
    DEFINE_SPAPR_PROPERTIES(SpaprVirtioVio, vdev),
    DEFINE_PROP_CHR("chardev", SpaprVirtioVio, chr),
    DEFINE_PROP_END_OF_LIST(),
};

/* The guest-visible state; the server's session is rebuilt by the guest. */
static const VMStateDescription vmstate_spapr_virtio_vio = {
    .name = "spapr_virtio_vio",
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = vv_post_load,
    .fields = (VMStateField[]) {
        VMSTATE_SPAPR_VIO(vdev, SpaprVirtioVio),
        VMSTATE_END_OF_LIST()
    },
};

static void spapr_virtio_vio_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    SpaprVioDeviceClass *k = VIO_SPAPR_DEVICE_CLASS(klass);

    k->realize = spapr_virtio_vio_realize;
    k->reset = spapr_virtio_vio_reset;
    k->dt_name = "virtio";
    k->dt_type = "virtio-vio";
    k->dt_compatible = "IBM,virtio-vio";
    k->signal_mask = 0x00000001;
    k->rtce_window_size = VV_RTCE_WINDOW_SIZE;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
    dc->desc = "sPAPR VIO transport for virtio, backed by an external server";
    device_class_set_props(dc, spapr_virtio_vio_properties);
    dc->vmsd = &vmstate_spapr_virtio_vio;
}

static const TypeInfo spapr_virtio_vio_info = {
    .name          = TYPE_VIO_SPAPR_VIRTIO_VIO_DEVICE,
    .parent        = TYPE_VIO_SPAPR_DEVICE,
    .instance_size = sizeof(SpaprVirtioVio),
    .class_init    = spapr_virtio_vio_class_init,
};

static void spapr_virtio_vio_register_types(void)
{
    type_register_static(&spapr_virtio_vio_info);
}

type_init(spapr_virtio_vio_register_types)
