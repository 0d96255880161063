/* storymesh.broker._wire: one whole ZeroMQ message per call, for the broker's hot path.
 *
 * pyzmq costs 3,000-6,800 instructions per frame (a Frame object, the GIL released and taken
 * around every libzmq call, argument checks); an MDP request is 30 frames through the broker.
 * These two functions read or write a whole multipart message in one call, on the libzmq
 * socket handle pyzmq gives as `Socket.underlying`.
 *
 * pyzmq's wheel ships no zmq.h and links its own copy of libzmq, so the few prototypes used
 * are declared here and resolved by `bind()` from the libzmq the process has already loaded
 * (dlopen with RTLD_NOLOAD: the same copy, never a second one). Every call is non-blocking
 * and keeps the GIL (nothing here waits). Errors other than "would block" are raised as
 * what the factory given to `bind()` builds from the errno (pyzmq's exception classes).
 *
 * Small frames come back as bytes. Frames of `big` bytes or more come back as `Msg`, which
 * keeps libzmq's message (zero-copy: a buffer, len(), .bytes) and is sent on without a copy.
 * The first PROTOCOL_FRAMES frames after the routing id are always bytes: the server compares
 * them with bytes literals whatever their size.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#define ZMQ_DONTWAIT 1
#define ZMQ_SNDMORE 2
#define PROTOCOL_FRAMES 3

/* As in zmq.h since libzmq 4.1: 64 opaque bytes, pointer-aligned. */
typedef struct zmq_msg_t {
    unsigned char _[64] __attribute__((aligned(sizeof(void *))));
} zmq_msg_t;

static int (*msg_init)(zmq_msg_t *);
static int (*msg_recv)(zmq_msg_t *, void *, int);
static int (*msg_send)(zmq_msg_t *, void *, int);
static int (*msg_close)(zmq_msg_t *);
static int (*msg_move)(zmq_msg_t *, zmq_msg_t *);
static int (*msg_copy)(zmq_msg_t *, zmq_msg_t *);
static void *(*msg_data)(zmq_msg_t *);
static size_t (*msg_size)(const zmq_msg_t *);
static int (*msg_more)(const zmq_msg_t *);
static int (*zsend)(void *, const void *, size_t, int);
static int (*zerrno)(void);
static void (*zversion)(int *, int *, int *);

static PyObject *error_class = NULL; /* errno -> exception (wire.zmq_error), set by bind() */
static int bound = 0;

static PyObject *raise_errno(int err) {
    PyObject *exc = PyObject_CallFunction(error_class, "i", err);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* --- Msg: a received frame kept as libzmq's message --------------------------------- */

typedef struct {
    PyObject_HEAD
    zmq_msg_t msg;
} Msg;

static void Msg_dealloc(Msg *self) {
    msg_close(&self->msg);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t Msg_len(Msg *self) { return (Py_ssize_t)msg_size(&self->msg); }

static int Msg_getbuffer(Msg *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, msg_data(&self->msg),
                             (Py_ssize_t)msg_size(&self->msg), 1, flags);
}

static PyObject *Msg_bytes(Msg *self, void *closure) {
    (void)closure;
    return PyBytes_FromStringAndSize(msg_data(&self->msg), (Py_ssize_t)msg_size(&self->msg));
}

static PySequenceMethods Msg_as_sequence = {.sq_length = (lenfunc)Msg_len};
static PyBufferProcs Msg_as_buffer = {.bf_getbuffer = (getbufferproc)Msg_getbuffer};
static PyGetSetDef Msg_getset[] = {
    {"bytes", (getter)Msg_bytes, NULL, "a copy of the frame as bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MsgType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "storymesh.broker._wire.Msg",
    .tp_basicsize = sizeof(Msg),
    .tp_dealloc = (destructor)Msg_dealloc,
    .tp_as_sequence = &Msg_as_sequence,
    .tp_as_buffer = &Msg_as_buffer,
    .tp_getset = Msg_getset,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A received ZeroMQ frame, kept without copying (buffer protocol, len, .bytes).",
};

/* --- recv ------------------------------------------------------------------------------ */

/* The Python object for a received frame; closes or moves `m` in every case. */
static PyObject *frame_object(zmq_msg_t *m, Py_ssize_t index, size_t big) {
    size_t size = msg_size(m);
    if (index < PROTOCOL_FRAMES || size < big) {
        PyObject *b = PyBytes_FromStringAndSize(msg_data(m), (Py_ssize_t)size);
        msg_close(m);
        return b;
    }
    Msg *obj = PyObject_New(Msg, &MsgType);
    if (obj == NULL) {
        msg_close(m);
        return NULL;
    }
    msg_init(&obj->msg);
    msg_move(&obj->msg, m);
    msg_close(m);
    return (PyObject *)obj;
}

/* Read and drop what is left of a message (after an error on the Python side). */
static void discard_rest(void *sock, int more) {
    zmq_msg_t m;
    while (more) {
        msg_init(&m);
        if (msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            msg_close(&m);
            return;
        }
        more = msg_more(&m);
        msg_close(&m);
    }
}

/* recv(handle, keep, big) -> (routing_id, frames) | None
 * The next message without blocking, None when none waits. At most `keep` frames are kept;
 * the rest are read and dropped one by one, never held. */
static PyObject *wire_recv(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "recv(handle, keep, big)");
        return NULL;
    }
    if (!bound) {
        PyErr_SetString(PyExc_RuntimeError, "_wire: bind() first");
        return NULL;
    }
    void *sock = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t keep = PyLong_AsSsize_t(args[1]);
    Py_ssize_t big = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred()) return NULL;
    if (sock == NULL || big < 0) {
        PyErr_SetString(PyExc_ValueError, "recv: a null socket or a negative size");
        return NULL;
    }
    zmq_msg_t m;
    msg_init(&m);
    if (msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
        int err = zerrno();
        msg_close(&m);
        if (err == EAGAIN) Py_RETURN_NONE;
        return raise_errno(err);
    }
    int more = msg_more(&m);
    PyObject *ident = PyBytes_FromStringAndSize(msg_data(&m), (Py_ssize_t)msg_size(&m));
    msg_close(&m);
    PyObject *frames = PyList_New(0);
    if (ident == NULL || frames == NULL) goto fail;
    Py_ssize_t index = 0;
    while (more) {
        msg_init(&m);
        /* the rest of a message arrives with its first frame: never would block */
        if (msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            int err = zerrno();
            msg_close(&m);
            Py_XDECREF(ident);
            Py_XDECREF(frames);
            return raise_errno(err);
        }
        more = msg_more(&m);
        if (index >= keep) {
            msg_close(&m);
            continue;
        }
        PyObject *frame = frame_object(&m, index, (size_t)big);
        index++;
        if (frame == NULL) goto fail;
        int rc = PyList_Append(frames, frame);
        Py_DECREF(frame);
        if (rc < 0) goto fail;
    }
    PyObject *out = PyTuple_New(2);
    if (out == NULL) goto fail;
    PyTuple_SET_ITEM(out, 0, ident);
    PyTuple_SET_ITEM(out, 1, frames);
    return out;
fail:
    discard_rest(sock, more);
    Py_XDECREF(ident);
    Py_XDECREF(frames);
    return NULL;
}

/* --- send ------------------------------------------------------------------------------ */

/* One frame: a Msg without copying, bytes or any buffer copied. 0, or -1 with errno kept
 * in *err (a libzmq error) or a Python exception set (*err == 0). */
static int send_frame(void *sock, PyObject *frame, int flags, int *err) {
    int rc;
    *err = 0;
    if (PyBytes_CheckExact(frame)) {
        rc = zsend(sock, PyBytes_AS_STRING(frame), (size_t)PyBytes_GET_SIZE(frame), flags);
    } else if (Py_IS_TYPE(frame, &MsgType)) {
        zmq_msg_t m;
        msg_init(&m);
        msg_copy(&m, &((Msg *)frame)->msg); /* shares the data, counted by libzmq */
        rc = msg_send(&m, sock, flags);
        if (rc < 0) {
            *err = zerrno();
            msg_close(&m);
            return -1;
        }
        return 0;
    } else {
        Py_buffer view;
        if (PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE) < 0) return -1;
        rc = zsend(sock, view.buf, (size_t)view.len, flags);
        if (rc < 0) *err = zerrno();
        PyBuffer_Release(&view);
        return rc < 0 ? -1 : 0;
    }
    if (rc < 0) {
        *err = zerrno();
        return -1;
    }
    return 0;
}

/* send(handle, routing_id, frames) -> 0 | errno
 * The whole message without blocking. The routing id goes first: when it fails (EAGAIN at
 * a full pipe, EHOSTUNREACH for a vanished peer with ROUTER_MANDATORY, anything else)
 * nothing was sent and its errno is returned. Once it is taken the rest cannot fail for
 * want of room; a failure there raises. */
static PyObject *wire_send(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "send(handle, routing_id, frames)");
        return NULL;
    }
    if (!bound) {
        PyErr_SetString(PyExc_RuntimeError, "_wire: bind() first");
        return NULL;
    }
    void *sock = PyLong_AsVoidPtr(args[0]);
    if (sock == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "send: a null socket");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[2], "send: frames must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "send: a message of no frames");
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int err;
    if (send_frame(sock, args[1], ZMQ_SNDMORE | ZMQ_DONTWAIT, &err) < 0) {
        Py_DECREF(seq);
        if (err == 0) return NULL;
        return PyLong_FromLong(err);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < n ? ZMQ_SNDMORE : 0);
        if (send_frame(sock, items[i], flags, &err) < 0) {
            Py_DECREF(seq);
            return err == 0 ? NULL : raise_errno(err);
        }
    }
    Py_DECREF(seq);
    return PyLong_FromLong(0);
}

/* --- bind ------------------------------------------------------------------------------ */

#define RESOLVE(var, name)                                                        \
    do {                                                                          \
        *(void **)(&var) = dlsym(lib, name);                                      \
        if (var == NULL) {                                                        \
            PyErr_Format(PyExc_ImportError, "%s: no symbol %s", path, name);      \
            return NULL;                                                          \
        }                                                                         \
    } while (0)

/* bind(path, error_factory, (major, minor, patch)) -> None
 * Resolve libzmq's functions from the copy already loaded from `path` (never loading
 * another), which must be of the version given (pyzmq's), and the callable that turns an
 * errno into the exception raised. */
static PyObject *wire_bind(PyObject *mod, PyObject *args) {
    (void)mod;
    const char *path;
    PyObject *cls;
    int want_major, want_minor, want_patch;
    if (!PyArg_ParseTuple(args, "sO(iii)", &path, &cls, &want_major, &want_minor, &want_patch))
        return NULL;
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL) {
        PyErr_Format(PyExc_ImportError, "%s is not loaded: %s", path, dlerror());
        return NULL;
    }
    RESOLVE(msg_init, "zmq_msg_init");
    RESOLVE(msg_recv, "zmq_msg_recv");
    RESOLVE(msg_send, "zmq_msg_send");
    RESOLVE(msg_close, "zmq_msg_close");
    RESOLVE(msg_move, "zmq_msg_move");
    RESOLVE(msg_copy, "zmq_msg_copy");
    RESOLVE(msg_data, "zmq_msg_data");
    RESOLVE(msg_size, "zmq_msg_size");
    RESOLVE(msg_more, "zmq_msg_more");
    RESOLVE(zsend, "zmq_send");
    RESOLVE(zerrno, "zmq_errno");
    RESOLVE(zversion, "zmq_version");
    int major, minor, patch;
    zversion(&major, &minor, &patch);
    if (major < 4 || (major == 4 && minor < 2)) {
        PyErr_Format(PyExc_ImportError, "libzmq %d.%d.%d: 4.2 or later needed", major, minor,
                     patch);
        return NULL;
    }
    if (major != want_major || minor != want_minor || patch != want_patch) {
        PyErr_Format(PyExc_ImportError, "%s is libzmq %d.%d.%d, not %d.%d.%d", path, major,
                     minor, patch, want_major, want_minor, want_patch);
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(error_class, cls);
    bound = 1;
    Py_RETURN_NONE;
}

static PyObject *wire_is_bound(PyObject *mod, PyObject *unused) {
    (void)mod;
    (void)unused;
    return PyBool_FromLong(bound);
}

static PyMethodDef wire_methods[] = {
    {"bind", (PyCFunction)wire_bind, METH_VARARGS,
     "bind(path, error_class, version): resolve libzmq from the copy loaded from path"},
    {"is_bound", (PyCFunction)wire_is_bound, METH_NOARGS, "whether bind() succeeded"},
    {"recv", (PyCFunction)(void (*)(void))wire_recv, METH_FASTCALL,
     "recv(handle, keep, big): the next message as (routing_id, frames), or None"},
    {"send", (PyCFunction)(void (*)(void))wire_send, METH_FASTCALL,
     "send(handle, routing_id, frames): 0, or the errno of the routing id's send"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef wire_module = {
    PyModuleDef_HEAD_INIT, "storymesh.broker._wire",
    "One whole ZeroMQ message per call (see _wire.c).", -1, wire_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__wire(void) {
    if (PyType_Ready(&MsgType) < 0) return NULL;
    PyObject *m = PyModule_Create(&wire_module);
    if (m == NULL) return NULL;
    Py_INCREF(&MsgType);
    if (PyModule_AddObject(m, "Msg", (PyObject *)&MsgType) < 0) {
        Py_DECREF(&MsgType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
