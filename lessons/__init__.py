"""The course frame: lessons as Markdown, a terminal walkthrough, and the notebooks' helper.

Instructors teach gatewaylab two ways: live in a terminal (``make lesson-3``) and with
Jupyter notebooks handed to students. Both run the same things: a server in the
background, raw requests with the server's trace, a look at its processes and threads,
a short load. This package does them once for both.

How the pieces fit::

    lessons/NN-name.md --markup--> Lesson (sections of prose and steps)
                                       |
                          runner.Walkthrough: prose -> rich; step -> steps.StepRunner
                                       |                      |
    notebooks/NN-name.ipynb --> notebook (start, send, procs, load)
                                       |                      |
                                      lab.Lab: named servers (servers.launch), connections
                                       |          |                 |
                                client (bytes)  procview (/proc)  load (locust, own process)

Modules, in reading order:

* ``markup``    the lesson file format (README.md in this folder is the author's guide)
* ``lab``       named servers and client connections; every failure a :class:`LabError`
                with a fix in words
* ``client``    requests as written -> bytes; responses read and framed; bytes shown
* ``procview``  a server's processes and threads from /proc, as a rich table
* ``load``      a short locust run in its own process, read back from its CSV
* ``steps``     what each kind of step does on the console
* ``runner``    the walkthrough: sections, prompts, re-runs, cleanup, recording
* ``catalog``   the course plan: which lessons exist, which arrive with which era
* ``notebook``  what notebooks import; ``guardian`` stops servers of a killed kernel
* ``check_notebooks``  ``make check-notebooks``: notebooks are committed without outputs

House rules: everything a lesson starts is a process group stopped in a ``finally``
(also on ``q``, Ctrl-C and SIGTERM); locust is never imported here, only run; a step
that fails tells the student what failed and how to fix it, never a traceback.
"""
