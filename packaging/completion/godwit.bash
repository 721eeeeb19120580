# SPDX-License-Identifier: MIT
#
# bash completion for godwit(8). Installed as
# /usr/share/bash-completion/completions/godwit; it needs nothing from the
# bash-completion package.

_godwit() {
	local cur prev cmd
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD - 1]}
	COMPREPLY=()
	if [ "$COMP_CWORD" -eq 1 ]; then
		mapfile -t COMPREPLY < <(compgen -W "run check show reload genkey pubkey demo version help" -- "$cur")
		return
	fi
	cmd=${COMP_WORDS[1]}
	case $cmd in
	run | check)
		case $prev in
		-c)
			# Config files: *.toml, and directories to descend into.
			compopt -o filenames 2>/dev/null
			mapfile -t COMPREPLY < <(compgen -f -X '!*.toml' -- "$cur"; compgen -d -- "$cur")
			;;
		*)
			mapfile -t COMPREPLY < <(compgen -W "-c" -- "$cur")
			;;
		esac
		;;
	show | reload)
		case $prev in
		-i)
			# Interfaces of running daemons: their control sockets (root only).
			local socks=(/run/godwit/*.sock) ifaces=() s
			for s in "${socks[@]}"; do
				[ -e "$s" ] || continue
				s=${s##*/}
				ifaces+=("${s%.sock}")
			done
			mapfile -t COMPREPLY < <(compgen -W "${ifaces[*]}" -- "$cur")
			;;
		--socket)
			compopt -o filenames 2>/dev/null
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
			;;
		*)
			if [ "$cmd" = show ]; then
				mapfile -t COMPREPLY < <(compgen -W "-i --json --socket" -- "$cur")
			else
				mapfile -t COMPREPLY < <(compgen -W "-i --socket" -- "$cur")
			fi
			;;
		esac
		;;
	demo)
		[ "$prev" = -mb ] || mapfile -t COMPREPLY < <(compgen -W "-mb" -- "$cur")
		;;
	esac
}
complete -F _godwit godwit
