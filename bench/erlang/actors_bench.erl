%% Erlang peer for troupe's actor benchmarks (bench/actors.c measures the same things).
%% Run with 2 schedulers:  erl -noshell +S 2:2 +P 2000000 -pa DIR -s actors_bench main -s init stop
%% Each figure is the median of 5 runs, printed as `BENCH <name> <value> <unit>`:
%%   erlang.oneway            one process sends ?ONEWAY messages {msg, I} in a plain loop to
%%                            a process that counts them; timed from the first send until
%%                            the receiver has received them all (it then tells the sender).
%%   erlang.roundtrip         a client makes ?ROUNDTRIP synchronous calls to a server process:
%%                            send {call, self(), Ref} with Ref = make_ref(), wait for
%%                            {reply, Ref} (the raw pattern inside gen_server:call).
%%   erlang.spawn_1m          seconds to spawn ?PROCS idle processes (each blocked in
%%                            `receive stop -> ok end`), until the last spawn returns.
%%   erlang.bytes_per_process growth of erlang:memory(processes) over that spawn, minus the
%%                            spawner's own growth (its list of pids), divided by ?PROCS.
%% Between runs: the processes are stopped and waited for, and everything is garbage collected.
-module(actors_bench).
-export([main/0]).

-define(RUNS, 5).
-define(ONEWAY, 5000000).
-define(ROUNDTRIP, 2000000).
-define(PROCS, 1000000).

main() ->
    OneWay = runs(fun() -> oneway(?ONEWAY) end),
    RoundTrip = runs(fun() -> roundtrip(?ROUNDTRIP) end),
    {Secs, Bytes} = lists:unzip(runs(fun() -> spawn_idle(?PROCS) end)),
    io:format("BENCH erlang.oneway ~B msgs/s~n", [round(median(OneWay))]),
    io:format("BENCH erlang.roundtrip ~B calls/s~n", [round(median(RoundTrip))]),
    io:format("BENCH erlang.spawn_1m ~.3f s~n", [float(median(Secs))]),
    io:format("BENCH erlang.bytes_per_process ~B bytes~n", [round(median(Bytes))]).

%% The results of ?RUNS calls of F, collecting garbage before each so runs start alike.
runs(F) ->
    [begin [erlang:garbage_collect(P) || P <- processes()], F() end || _ <- lists:seq(1, ?RUNS)].

median(L) -> lists:nth((length(L) + 1) div 2, lists:sort(L)).

now_s() -> erlang:monotonic_time(nanosecond) / 1.0e9.

%% ---- one-way messages ----------------------------------------------------------

oneway(N) ->
    Parent = self(),
    Counter = spawn(fun() -> count(N, Parent) end),
    T0 = now_s(),
    send_loop(Counter, 1, N),
    receive {counted, Counter} -> ok end,
    N / (now_s() - T0).

send_loop(_, I, N) when I > N -> ok;
send_loop(To, I, N) -> To ! {msg, I}, send_loop(To, I + 1, N).

count(0, Parent) -> Parent ! {counted, self()};
count(N, Parent) -> receive {msg, _} -> count(N - 1, Parent) end.

%% ---- synchronous round trips -----------------------------------------------------

roundtrip(M) ->
    Server = spawn(fun serve/0),
    T0 = now_s(),
    call_loop(Server, M),
    Rate = M / (now_s() - T0),
    Server ! stop,
    Rate.

call_loop(_, 0) -> ok;
call_loop(Server, M) ->
    Ref = make_ref(),
    Server ! {call, self(), Ref},
    receive {reply, Ref} -> call_loop(Server, M - 1) end.

serve() ->
    receive
        {call, From, Ref} -> From ! {reply, Ref}, serve();
        stop -> ok
    end.

%% ---- spawning idle processes -----------------------------------------------------

spawn_idle(N) ->
    Base = erlang:system_info(process_count),
    Mem0 = erlang:memory(processes),
    {memory, Self0} = process_info(self(), memory),
    T0 = now_s(),
    Pids = spawn_n(N, []),
    Secs = now_s() - T0,
    {memory, Self1} = process_info(self(), memory),
    Bytes = (erlang:memory(processes) - Mem0 - (Self1 - Self0)) / N,
    [P ! stop || P <- Pids],
    wait_count(Base),
    {Secs, Bytes}.

spawn_n(0, Pids) -> Pids;
spawn_n(N, Pids) -> spawn_n(N - 1, [spawn(fun idle/0) | Pids]).

idle() -> receive stop -> ok end.

wait_count(Base) ->
    case erlang:system_info(process_count) > Base of
        true -> timer:sleep(10), wait_count(Base);
        false -> ok
    end.
