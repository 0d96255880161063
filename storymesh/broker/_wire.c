/* storymesh.broker._wire: one whole ZeroMQ message per call, for the broker's hot path.
 *
 * pyzmq costs 3,000-6,800 instructions per frame (a Frame object, the GIL released and taken
 * around every libzmq call, argument checks); an MDP request is 30 frames through the broker.
 * These two functions read or write a whole multipart message in one call, on the libzmq
 * socket handle pyzmq gives as `Socket.underlying`.
 *
 * pyzmq's wheel ships no zmq.h and links its own copy of libzmq, so the few prototypes used
 * are declared here and resolved by `bind()` from the libzmq the process has already loaded
 * (dlopen with RTLD_NOLOAD: the same copy, never a second one); once bound they never change,
 * as live `Msg` objects close through them. Every call is non-blocking and keeps the GIL
 * (nothing here waits); EINTR is retried, as pyzmq does. Errors other than "would block" are
 * raised as what the factory given to `bind()` builds from the errno (pyzmq's exception
 * classes). A null handle (the broker's once its socket is closed) is ENOTSOCK, as pyzmq
 * says for a closed socket, never a call into libzmq with a freed socket.
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
/* A libzmq call again while a signal interrupts it (pyzmq retries EINTR too). */
#define RETRY_EINTR(rc, call) \
    do (rc) = (call); while ((rc) < 0 && zerrno() == EINTR)

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
static void *bound_lib = NULL;        /* the libzmq the pointers above come from, once bound */
static int bound = 0;

static PyObject *raise_errno(int err) {
    PyObject *exc = PyObject_CallFunction(error_class, "i", err);
    if (exc == NULL) return NULL;
    if (PyExceptionInstance_Check(exc))
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    else
        PyErr_Format(PyExc_TypeError, "_wire: the error factory gave no exception for %d", err);
    Py_DECREF(exc);
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
        int rc;
        RETRY_EINTR(rc, msg_recv(&m, sock, ZMQ_DONTWAIT));
        if (rc < 0) {
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
    Py_ssize_t keep = PyLong_AsSsize_t(args[1]);
    if (keep == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t big = PyLong_AsSsize_t(args[2]);
    if (big == -1 && PyErr_Occurred()) return NULL;
    if (big < 0) {
        PyErr_SetString(PyExc_ValueError, "recv: a negative size");
        return NULL;
    }
    void *sock = PyLong_AsVoidPtr(args[0]);
    if (sock == NULL) return PyErr_Occurred() ? NULL : raise_errno(ENOTSOCK);
    zmq_msg_t m;
    int rc;
    msg_init(&m);
    RETRY_EINTR(rc, msg_recv(&m, sock, ZMQ_DONTWAIT));
    if (rc < 0) {
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
        RETRY_EINTR(rc, msg_recv(&m, sock, ZMQ_DONTWAIT));
        if (rc < 0) {
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
        rc = PyList_Append(frames, frame);
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

/* Frames sent as they are: bytes (copied by zmq_send) and Msg (shared, no copy). */
static int is_plain(PyObject *frame) {
    return PyBytes_CheckExact(frame) || Py_IS_TYPE(frame, &MsgType);
}

/* One frame: 0, or -1 with the errno in *err. `view` holds the bytes of a frame that is
 * neither bytes nor Msg, taken beforehand: no Python error can arise here. */
static int send_frame(void *sock, PyObject *frame, Py_buffer *view, int flags, int *err) {
    int rc;
    if (PyBytes_CheckExact(frame)) {
        RETRY_EINTR(rc, zsend(sock, PyBytes_AS_STRING(frame), (size_t)PyBytes_GET_SIZE(frame),
                              flags));
    } else if (Py_IS_TYPE(frame, &MsgType)) {
        zmq_msg_t m;
        msg_init(&m);
        rc = msg_copy(&m, &((Msg *)frame)->msg); /* shares the data, counted by libzmq */
        if (rc == 0) RETRY_EINTR(rc, msg_send(&m, sock, flags)); /* takes m when it succeeds */
        if (rc < 0) {
            *err = zerrno();
            msg_close(&m);
            return -1;
        }
        return 0;
    } else {
        RETRY_EINTR(rc, zsend(sock, view->buf, (size_t)view->len, flags));
    }
    if (rc < 0) {
        *err = zerrno();
        return -1;
    }
    return 0;
}

/* The routing id, then the n frames. `views` is NULL when all are bytes or Msg, else one per
 * frame, the routing id's first. A failure of the routing id: its errno, nothing sent. Once
 * it is taken the rest cannot fail for want of room; a failure there (a dying socket) raises. */
static PyObject *send_message(void *sock, PyObject *rid, PyObject *const *items, Py_ssize_t n,
                              Py_buffer *views) {
    int err;
    if (send_frame(sock, rid, views, ZMQ_SNDMORE | ZMQ_DONTWAIT, &err) < 0)
        return PyLong_FromLong(err);
    for (Py_ssize_t i = 0; i < n; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < n ? ZMQ_SNDMORE : 0);
        if (send_frame(sock, items[i], views == NULL ? NULL : &views[i + 1], flags, &err) < 0)
            return raise_errno(err);
    }
    return PyLong_FromLong(0);
}

/* Release the buffers taken for the first `count` of rid + items. */
static void release_views(PyObject *rid, PyObject *const *items, Py_buffer *views,
                          Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!is_plain(i == 0 ? rid : items[i - 1])) PyBuffer_Release(&views[i]);
    }
}

/* The send where some frame is another buffer (bytearray, memoryview, zmq.Frame...): the
 * frames are held in a tuple of their own (whatever the caller's list does meanwhile) and
 * every buffer is taken before the routing id goes, so that a frame that is no buffer fails
 * with nothing sent instead of leaving the ROUTER inside a message (the next message would
 * then go on as more frames of this one, to this peer). */
static PyObject *send_buffers(void *sock, PyObject *rid, PyObject *seq) {
    PyObject *held = PySequence_Tuple(seq);
    if (held == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(held);
    PyObject *const *items = &PyTuple_GET_ITEM(held, 0);
    Py_buffer *views = PyMem_Calloc((size_t)n + 1, sizeof(Py_buffer));
    PyObject *out = NULL;
    if (views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i <= n; i++) {
        PyObject *frame = i == 0 ? rid : items[i - 1];
        if (!is_plain(frame) && PyObject_GetBuffer(frame, &views[i], PyBUF_SIMPLE) < 0) {
            release_views(rid, items, views, i);
            goto done;
        }
    }
    out = send_message(sock, rid, items, n, views);
    release_views(rid, items, views, n + 1);
done:
    PyMem_Free(views);
    Py_DECREF(held);
    return out;
}

/* send(handle, routing_id, frames) -> 0 | errno
 * The whole message without blocking. The routing id goes first: when it fails (EAGAIN at
 * a full pipe, EHOSTUNREACH for a vanished peer with ROUTER_MANDATORY, ENOTSOCK for a null
 * handle, anything else) nothing was sent and its errno is returned. Every frame is checked
 * before: one that is no buffer raises with nothing sent. */
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
    if (sock == NULL && PyErr_Occurred()) return NULL;
    PyObject *seq = PySequence_Fast(args[2], "send: frames must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *rid = args[1];
    PyObject *out;
    int plain = is_plain(rid);
    for (Py_ssize_t i = 0; plain && i < n; i++) plain = is_plain(items[i]);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "send: a message of no frames");
        out = NULL;
    } else if (sock == NULL) {
        out = PyLong_FromLong(ENOTSOCK); /* a closed socket, as pyzmq says */
    } else if (plain) { /* no Python code runs until the message is sent */
        out = send_message(sock, rid, items, n, NULL);
    } else {
        out = send_buffers(sock, rid, seq);
    }
    Py_DECREF(seq);
    return out;
}

/* --- bind ------------------------------------------------------------------------------ */

/* The functions bind() resolves, and where each goes. */
static const struct {
    const char *name;
    void **slot;
} functions[] = {
    {"zmq_msg_init", (void **)&msg_init},   {"zmq_msg_recv", (void **)&msg_recv},
    {"zmq_msg_send", (void **)&msg_send},   {"zmq_msg_close", (void **)&msg_close},
    {"zmq_msg_move", (void **)&msg_move},   {"zmq_msg_copy", (void **)&msg_copy},
    {"zmq_msg_data", (void **)&msg_data},   {"zmq_msg_size", (void **)&msg_size},
    {"zmq_msg_more", (void **)&msg_more},   {"zmq_send", (void **)&zsend},
    {"zmq_errno", (void **)&zerrno},        {"zmq_version", (void **)&zversion},
};
#define N_FUNCTIONS (sizeof(functions) / sizeof(functions[0]))
#define ZMQ_VERSION_AT (N_FUNCTIONS - 1)

/* bind(path, error_factory, (major, minor, patch)) -> None
 * Resolve libzmq's functions from the copy already loaded from `path` (never loading
 * another), which must be of the version given (pyzmq's), and the callable that turns an
 * errno into the exception raised. All are checked before any is kept: a failed bind leaves
 * the module as it was. Once bound the functions stay (live Msg objects close through
 * them): binding again to the same library only takes the new factory, to another fails. */
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
    if (bound) {
        dlclose(lib); /* the count this dlopen took; the first bind keeps its own */
        if (lib != bound_lib) {
            PyErr_Format(PyExc_ImportError, "%s: _wire is bound to another libzmq", path);
            return NULL;
        }
    } else {
        void *found[N_FUNCTIONS];
        for (size_t i = 0; i < N_FUNCTIONS; i++) {
            found[i] = dlsym(lib, functions[i].name);
            if (found[i] == NULL) {
                PyErr_Format(PyExc_ImportError, "%s: no symbol %s", path, functions[i].name);
                dlclose(lib);
                return NULL;
            }
        }
        int major, minor, patch;
        void (*version)(int *, int *, int *);
        *(void **)(&version) = found[ZMQ_VERSION_AT];
        version(&major, &minor, &patch);
        if (major < 4 || (major == 4 && minor < 2)) {
            PyErr_Format(PyExc_ImportError, "libzmq %d.%d.%d: 4.2 or later needed", major,
                         minor, patch);
            dlclose(lib);
            return NULL;
        }
        if (major != want_major || minor != want_minor || patch != want_patch) {
            PyErr_Format(PyExc_ImportError, "%s is libzmq %d.%d.%d, not %d.%d.%d", path, major,
                         minor, patch, want_major, want_minor, want_patch);
            dlclose(lib);
            return NULL;
        }
        for (size_t i = 0; i < N_FUNCTIONS; i++) *functions[i].slot = found[i];
        bound_lib = lib; /* never closed: Msg objects may outlive every socket */
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
