"""SSH (`--ssh-addr`) with a second client library, asyncssh: commands (stdout and stderr apart,
stdin, exit status, exit signal, a forwarded signal, env), SFTP (transfers, listing, stat,
renames, links, updates in place, errors), local forwarding, the host key, and refusals."""

import asyncio
import os

import asyncssh
import pytest

from conftest import Daemon


@pytest.fixture(scope="module")
def client_key(toolboxd: Daemon):
    """A key the daemon authorizes (appended to its HOME's authorized_keys: read at every
    login, so no restart)."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment="asyncssh-test")
    ssh_dir = toolboxd.home / ".ssh"
    ssh_dir.mkdir(exist_ok=True)
    with open(ssh_dir / "authorized_keys", "ab") as listed:
        listed.write(key.export_public_key())
    return key


def _connect(toolboxd: Daemon, **options):
    options.setdefault("known_hosts", None)
    return asyncssh.connect(
        "127.0.0.1", port=toolboxd.ssh_port, username="sandbox", agent_path=None, **options
    )


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def test_commands_keep_streams_apart_and_report_exits(toolboxd: Daemon, client_key):
    async def main():
        async with _connect(toolboxd, client_keys=[client_key]) as conn:
            result = await conn.run("echo out; echo err >&2; exit 4")
            assert (result.stdout, result.stderr, result.exit_status) == ("out\n", "err\n", 4)
            data = os.urandom(3 << 20).hex()
            result = await conn.run("cat; echo done >&2", input=data)
            assert result.stdout == data and result.stderr == "done\n"
            result = await conn.run("echo $GREETING", env={"GREETING": "hello"})
            assert result.stdout == "hello\n"
            result = await conn.run("pwd")
            assert result.stdout.strip() == str(toolboxd.workdir)
            result = await conn.run("kill -TERM $$")
            assert result.exit_signal is not None and result.exit_signal[0] == "TERM"
            # A signal reaches the command's process group.
            process = await conn.create_process(
                "trap 'echo got-int; exit 9' INT; echo ready; sleep 30 & wait"
            )
            assert await process.stdout.readline() == "ready\n"
            process.send_signal("INT")
            result = await process.wait()
            assert result.stdout == "got-int\n" and result.exit_status == 9

    _run(main())


def test_the_host_key_is_the_one_on_disk(toolboxd: Daemon, client_key):
    async def main():
        async with _connect(toolboxd, client_keys=[client_key]) as conn:
            saved = asyncssh.read_private_key(toolboxd.home / ".toolboxd" / "ssh_host_ed25519_key")
            offered = conn.get_server_host_key()
            assert offered.public_data == saved.public_data

    _run(main())


def test_sftp_transfers_and_manages_files(toolboxd: Daemon, client_key, tmp_path):
    local = tmp_path / "up.bin"
    local.write_bytes(os.urandom(5 << 20))
    back = tmp_path / "down.bin"

    async def main():
        async with _connect(toolboxd, client_keys=[client_key]) as conn:
            async with conn.start_sftp_client() as sftp:
                assert await sftp.realpath(".") == str(toolboxd.workdir)
                await sftp.mkdir("sftp-test")
                await sftp.put(str(local), "sftp-test/up.bin")
                assert (toolboxd.workdir / "sftp-test" / "up.bin").read_bytes() == local.read_bytes()
                await sftp.get("sftp-test/up.bin", str(back))
                assert back.read_bytes() == local.read_bytes()
                attrs = await sftp.stat("sftp-test/up.bin")
                assert attrs.size == 5 << 20
                names = sorted(await sftp.listdir("sftp-test"))
                assert names == [".", "..", "up.bin"]
                await sftp.posix_rename("sftp-test/up.bin", "sftp-test/renamed.bin")
                await sftp.symlink("renamed.bin", "sftp-test/link")
                assert await sftp.readlink("sftp-test/link") == "renamed.bin"
                await sftp.chmod("sftp-test/renamed.bin", 0o640)
                assert (await sftp.stat("sftp-test/renamed.bin")).permissions & 0o777 == 0o640
                # Updates and appends change the file in place.
                async with sftp.open("sftp-test/log.txt", "w") as f:
                    await f.write("0123456789")
                async with sftp.open("sftp-test/log.txt", "r+") as f:
                    await f.write("ab", 2)
                async with sftp.open("sftp-test/log.txt", "a") as f:
                    await f.write("!")
                assert (toolboxd.workdir / "sftp-test" / "log.txt").read_text() == "01ab456789!"
                assert (await sftp.statvfs(".")).bsize > 0
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    await sftp.stat("sftp-test/missing")
                with pytest.raises(asyncssh.SFTPError):
                    await sftp.rmdir("sftp-test")
                for name in ("renamed.bin", "link", "log.txt"):
                    await sftp.remove(f"sftp-test/{name}")
                await sftp.rmdir("sftp-test")
                assert not (toolboxd.workdir / "sftp-test").exists()

    _run(main())


def test_local_forwarding_reaches_loopback_only(toolboxd: Daemon, client_key):
    port = int(toolboxd.toolbox_url.rsplit(":", 1)[1])

    async def main():
        async with _connect(toolboxd, client_keys=[client_key]) as conn:
            reader, writer = await conn.open_connection("127.0.0.1", port)
            writer.write(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 200") and b'"version"' in answer
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("192.0.2.1", 80)

    _run(main())


def test_passwords_and_unknown_keys_are_refused(toolboxd: Daemon, client_key):
    async def main():
        with pytest.raises(asyncssh.PermissionDenied):
            async with _connect(toolboxd, password="sandbox-ssh", client_keys=None):
                pass
        stranger = asyncssh.generate_private_key("ssh-ed25519")
        with pytest.raises(asyncssh.PermissionDenied):
            async with _connect(toolboxd, client_keys=[stranger]):
                pass

    _run(main())
